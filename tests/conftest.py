pytest_plugins = ["langchain_fusion.testing.pytest_plugin"]
