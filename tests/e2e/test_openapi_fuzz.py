"""Schemathesis against a real ``popgate host``: the API keeps to its OpenAPI document.

Every operation of the published document is called with generated valid and invalid input,
over HTTPS as the Administrator: no answer may be a server error, and every answer must have
a status code and a body that the document declares for it.

Schemathesis's own pytest integration (``schemathesis.pytest.from_fixture``) sets
``Function._nodeid``, which pytest 9.2 no longer has, so the operations run here as subtests
through its public strategy API (``APIOperation.as_strategy``) instead.
"""

from __future__ import annotations

import os
import re
import time
from collections import defaultdict
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Installation
from tests.e2e.test_backend import PASSWORD

Operation = APIOperation[Any, Any, Any, Any]

#: Operations not called, because they would spoil the run itself.
SABOTAGE = {
    # A generated password for the Administrator would make every later call a 401.
    "PUT /api/v1/mailboxes/{identity}/password",
    # Taking the Administrator out of Organization Management would make them 403s.
    "DELETE /api/v1/role-groups/{group}/members/{member}",
}

#: Path parameters that name something that exists, so that valid cases get past "not
#: found" (generated names never do); each is one of these, one at a time.
EXISTING = {
    "name": ["MSExchangePOP3BE", "MSExchangePOP3", "Microsoft Exchange POP3 Backend"],
    "identity": ["fuzzed", "Administrator"],
    "group": ["Organization Management", "View-Only Organization Management"],
    "member": ["fuzzed"],
}
#: The mailbox the run may change and remove.
FUZZED_MAILBOX = "fuzzed"

#: Generated cases per operation (valid, invalid, valid on existing objects): each call is an
#: argon2 login, and the whole run stays under a minute on two cores. POPGATE_FUZZ_EXAMPLES
#: asks for more, and for new random cases each run, to dig deeper by hand.
DEEPER = os.environ.get("POPGATE_FUZZ_EXAMPLES")
EXAMPLES = int(DEEPER or 10)

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the host and its data are new every run: nothing to replay
    derandomize=not DEEPER,  # by default the same cases every run, so a failure reproduces
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


class Answers:
    """The status codes each operation answered: proof that the calls got past the login."""

    def __init__(self) -> None:
        self.seen: defaultdict[str, set[int]] = defaultdict(set)

    def check(self, ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
        """A schemathesis check: record the answer, then check its status code as
        ``status_code_conformance`` does."""
        self.seen[case.operation.label].add(response.status_code)
        return status_code_conformance(ctx, response, case)


def on_existing(operation: Operation) -> st.SearchStrategy[Case[Any]] | None:
    """Valid cases of ``operation`` whose path names existing objects; None if it has no
    path parameters."""
    names = re.findall(r"\{(\w+)\}", operation.path)
    if not names:
        return None
    fixed = st.fixed_dictionaries({name: st.sampled_from(EXISTING[name]) for name in names})
    return fixed.flatmap(lambda values: operation.as_strategy(path_parameters=values))


def fuzz(operation: Operation, session: requests.Session, answers: Answers) -> None:
    """Call ``operation`` with valid and invalid cases; raise on the first failed check."""
    kinds = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    existing = on_existing(operation)
    if existing is not None:
        kinds.append(existing)
    checks = [not_a_server_error, response_schema_conformance, answers.check]

    @FUZZ_SETTINGS
    @given(st.one_of(kinds))
    def run(case: Case[Any]) -> None:
        case.call_and_validate(session=session, checks=checks)

    run()


# The host's certificate is self-signed: urllib3 warns of every unverified call.
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_api_keeps_to_its_openapi_document(
    installation: Installation, subtests: pytest.Subtests
) -> None:
    installation.add_mailbox(FUZZED_MAILBOX, PASSWORD)
    installation.start_host()
    base = f"https://127.0.0.1:{installation.https_port}"
    # Served without a login, like the copy in docs/.
    schema = schemathesis.openapi.from_url(f"{base}/api/v1/openapi.json", verify=False, timeout=30)
    schema.config.update(base_url=base, tls_verify=False, request_timeout=60)
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document describes an operation badly"
    answers = Answers()
    password = installation.layout.administrator_password_file.read_text().strip()
    began = time.monotonic()
    with requests.Session() as session:
        session.auth = ("Administrator", password)
        for operation in operations:
            if operation.label not in SABOTAGE:
                with subtests.test(msg=operation.label):
                    fuzz(operation, session, answers)
    print(f"{len(answers.seen)} operations fuzzed in {time.monotonic() - began:.0f} s")

    assert len(answers.seen) == len(operations) - len(SABOTAGE)
    # Invalid cases include calls without the login (401), but none got only those.
    assert not [label for label, seen in answers.seen.items() if seen == {401}], answers.seen
    succeeded = [label for label, seen in answers.seen.items() if any(s < 300 for s in seen)]
    assert "GET /api/v1/services" in succeeded, answers.seen
    assert len(succeeded) >= len(answers.seen) // 2, answers.seen
