"""The backend contract on the two embedded backends."""

import pytest
from contract_suite import *  # noqa: F401,F403


@pytest.fixture(params=["serial", "multiprocessing"])
def init_kwargs(request):
    return {"backend": request.param}
