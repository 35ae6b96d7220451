from wire_schema import wire_schema_checked  # noqa: F401  (every test: the gateway's bytes)

pytest_plugins = ["langchain_fusion.testing.pytest_plugin"]
