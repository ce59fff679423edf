"""Token counts against the OpenAI cookbook's published test vectors (verified there against the API)."""

from gateway.metering.counting import count_chat_request, count_messages, encoding_for_model

COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
                                  "into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to "
                                                               "do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]

COOKBOOK_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {"type": "string", "description": "The unit of temperature to return",
                         "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["location"],
        },
    },
}]
TOOL_MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant that can answer to questions about the weather."},
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


def test_cookbook_messages_129_on_cl100k_and_124_on_gpt4o():
    for model, expected in [("gpt-4", 129), ("gpt-3.5-turbo", 129), ("gpt-4o", 124), ("gpt-4o-mini", 124)]:
        enc = encoding_for_model(model)
        assert enc.known
        assert count_messages(COOKBOOK_MESSAGES, enc.name) == expected, model


def test_cookbook_tools_105_on_cl100k_and_101_on_gpt4o():
    for model, expected in [("gpt-4", 105), ("gpt-3.5-turbo", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)]:
        body = {"messages": TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
        assert count_chat_request(body, encoding_for_model(model).name) == expected, model


def test_model_families():
    assert encoding_for_model("gpt-4.1-mini").name == "o200k_base"
    assert encoding_for_model("o3-mini").name == "o200k_base"
    assert encoding_for_model("gpt-5").name == "o200k_base"
    assert encoding_for_model("text-embedding-3-small").name == "cl100k_base"
    unknown = encoding_for_model("llama-3.1-70b", default="cl100k_base")
    assert unknown == type(unknown)("cl100k_base", False)
