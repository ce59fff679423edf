-- Prompt-cache writes, as SQLite ledger version 7: the part of input_tokens that providers such as
-- Anthropic bill apart (cost_usd already includes them at the write price). NULL on older rows.
ALTER TABLE requests ADD COLUMN cache_write_tokens bigint;
