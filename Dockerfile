# Same install as the README: the package with its runtime dependencies, then `gateway serve`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policies ./policies
COPY prompts ./prompts
COPY evals ./evals
RUN pip install --no-cache-dir -e . \
    && python -c "from gateway.metering.tokenizer import install_offline_bpe; install_offline_bpe()"
ENV GATEWAY_STATE_DIR=/data
VOLUME /data
EXPOSE 8080
# Listening on 0.0.0.0 requires keys in policies/gateway.yaml (or --allow-open, deliberately).
CMD ["gateway", "serve", "--host", "0.0.0.0", "--port", "8080"]
