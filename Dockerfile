# Same install as the README, minus the test tools: the package with its guardrail models (`all`),
# then `gateway serve`. torch comes from PyTorch's CPU index first, so pip does not pull the multi-GB
# CUDA build (the README's machine has the CPU wheel locally; a container does not).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies ./policies
COPY prompts ./prompts
COPY evals ./evals
RUN pip install --no-cache-dir 'torch>=2.2,<2.14' --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir -e '.[all]' \
    && python -c "from gateway.metering.tokenizer import install_offline_bpe; install_offline_bpe()"
ENV GATEWAY_STATE_DIR=/data
VOLUME /data
EXPOSE 8080
# Listening on 0.0.0.0 requires keys in policies/gateway.yaml (or --allow-open, deliberately).
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
