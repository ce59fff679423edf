from gateway.metering.tokenizer import encoding


def test_offline_encodings_match_tiktoken_reference_ids():
    assert encoding("cl100k_base").encode("hello world") == [15339, 1917]
    assert encoding("o200k_base").encode("hello world") == [24912, 2375]
