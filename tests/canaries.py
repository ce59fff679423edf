"""Values tests send on purpose and that must never appear in any log (checked in tests/conftest.py)."""

KEY = "sk-canary-Zq81XvT4pL0kWm2s"  # as a client's key, an upstream's key, a key pasted in a prompt
PROMPT = "canary prompt: my grandmother's recipe is 7 cups of quartzflour"
ALL = (KEY, "Zq81XvT4pL0kWm2s", "quartzflour")
