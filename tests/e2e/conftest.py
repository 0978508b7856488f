"""Browser-test plumbing: each test's outcome is kept on its item, so the `page` fixture can
save a screenshot and the page's errors when the test failed."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
