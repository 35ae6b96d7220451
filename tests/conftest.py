pytest_plugins = ["langchain_fusion.testing.pytest_plugin", "tests.local_stand_in"]
