"""Context in log records: filter, prefix, adapter, record factory and the two formatters."""

import io
import json
import logging
import re

import pytest

import tenancy
from tenancy.log import (
    ContextAwareLogger,
    JSONFormatter,
    KeyValueFormatter,
    TenantContextFilter,
    add_context_to_log_record,
    get_context_log_prefix,
    get_logger,
)

FIELDS = ("request_id", "tenant_id", "user_id", "agent_id", "conversation_id", "collection_id")
RID = "5f0c2a9e-1b7d-4c1e-9a3f-0d2b6e8c4a11"
LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ level=INFO logger=\S+ message="[^"]*" ')


def record(msg="hello", *args, name="tests.log", **extra):
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


@pytest.fixture
def stream_logger():
    """A real logger writing key=value lines through the context filter into a buffer."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(TenantContextFilter())
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("tests.views")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield logger, buffer
    logger.removeHandler(handler)
    logger.setLevel(old_level)


@pytest.fixture
def restore_record_factory():
    factory = logging.getLogRecordFactory()
    yield
    logging.setLogRecordFactory(factory)


# -- filter and prefix -----------------------------------------------------------------


def test_filter_outside_any_context_sets_dashes():
    rec = record()
    assert TenantContextFilter().filter(rec) is True
    assert all(getattr(rec, key) == "-" for key in FIELDS)
    assert rec.context_prefix == ""


def test_filter_copies_the_context():
    with tenancy.Context(tenant_id="acme", agent_id="agent_12", request_id=RID, user_id=7):
        rec = record()
        TenantContextFilter().filter(rec)
    assert (rec.tenant_id, rec.agent_id, rec.request_id, rec.user_id) == (
        "acme",
        "agent_12",
        RID,
        7,
    )
    assert rec.conversation_id == "-" and rec.collection_id == "-"
    assert rec.context_prefix == "[t:acme a:agent_12] "


def test_filter_keeps_values_given_in_extra():
    with tenancy.Context(tenant_id="acme"):
        rec = record(tenant_id="globex")
        TenantContextFilter().filter(rec)
    assert rec.tenant_id == "globex"


def test_the_fields_of_a_context_are_shared_but_never_stale_or_changed_by_extra():
    check = TenantContextFilter().filter
    with tenancy.Context(tenant_id="acme", request_id=RID):
        first, overridden, second = record(), record(tenant_id="given"), record()
        check(first)
        check(overridden)
        check(second)
        with tenancy.Context(user_id=7):  # a new snapshot: new fields
            third = record()
            check(third)
        fourth = record()
        check(fourth)
    assert overridden.tenant_id == "given" and overridden.request_id == RID
    for rec in (first, second, fourth):
        assert (rec.tenant_id, rec.request_id, rec.user_id) == ("acme", RID, "-")
    assert (third.tenant_id, third.user_id) == ("acme", 7)
    outside = record()
    check(outside)
    assert outside.tenant_id == "-" and outside.request_id == "-"


def test_requests_of_one_tenant_share_a_template_but_keep_their_own_ids():
    check = TenantContextFilter().filter
    lines = []
    for n, user in enumerate(["7", 7, True, 1, "7"]):
        request_id = f"{RID[:-2]}{n:02d}"
        with tenancy.Context(tenant_id="acme", request_id=request_id, user_id=user):
            rec = record()
            check(rec)
            lines.append((rec.request_id, rec.user_id, type(rec.user_id), rec.context_prefix))
    assert [line[0] for line in lines] == [f"{RID[:-2]}{n:02d}" for n in range(5)]
    # True and 1 are one dict key, yet each line keeps its own value and type.
    assert [line[1:3] for line in lines] == [
        ("7", str), (7, int), (True, bool), (1, int), ("7", str)
    ]
    assert {line[3] for line in lines} == {"[t:acme] "}


def test_format_strings_never_fail():
    formatter = logging.Formatter("%(request_id)s %(tenant_id)s %(context_prefix)s%(message)s")
    rec = record()
    TenantContextFilter().filter(rec)
    assert formatter.format(rec) == "- - hello"


@pytest.mark.parametrize(
    ("values", "prefix"),
    [
        ({}, ""),
        ({"tenant_id": "acme"}, "[t:acme] "),
        ({"tenant_id": "tenant_a", "agent_id": "agent_12"}, "[t:tenant_a a:agent_12] "),
        ({"agent_id": "a1", "conversation_id": "c9"}, "[a:a1 c:c9] "),
        ({"request_id": RID}, ""),
    ],
)
def test_context_log_prefix(values, prefix):
    with tenancy.Context(**values):
        assert get_context_log_prefix() == prefix
    assert get_context_log_prefix() == ""


# -- ContextAwareLogger ----------------------------------------------------------------


def test_context_aware_logger_adds_context_and_keeps_extra(caplog):
    logger = ContextAwareLogger("tests.adapter")
    with caplog.at_level(logging.INFO), tenancy.Context(tenant_id="acme", request_id=RID):
        logger.info("Creating run %s", 7, extra={"run_id": 7, "user_id": "u1"})
    (rec,) = caplog.records
    assert rec.getMessage() == "Creating run 7"
    assert (rec.tenant_id, rec.request_id, rec.run_id, rec.user_id) == ("acme", RID, 7, "u1")
    assert rec.agent_id == "-"


def test_get_logger_returns_a_context_aware_logger():
    logger = get_logger("tests.some.module")
    assert isinstance(logger, ContextAwareLogger)
    assert logger.logger is logging.getLogger("tests.some.module")


# -- record factory --------------------------------------------------------------------


def test_record_factory_is_installed_once(restore_record_factory):
    add_context_to_log_record()
    installed = logging.getLogRecordFactory()
    add_context_to_log_record()
    assert logging.getLogRecordFactory() is installed
    with tenancy.Context(tenant_id="acme", request_id=RID):
        rec = logging.getLogger("tests.factory").makeRecord(
            "tests.factory", logging.INFO, __file__, 1, "m", (), None
        )
    # Formatted later, elsewhere: the record keeps the context it was created in.
    assert (rec.tenant_id, rec.request_id, rec.context_prefix) == ("acme", RID, "[t:acme] ")


def test_record_factory_wraps_the_previous_factory(restore_record_factory):
    previous = logging.getLogRecordFactory()

    def custom(*args, **kwargs):
        rec = previous(*args, **kwargs)
        rec.custom = "yes"
        return rec

    logging.setLogRecordFactory(custom)
    add_context_to_log_record()
    rec = logging.getLogger("t").makeRecord("t", logging.INFO, __file__, 1, "m", (), None)
    assert rec.custom == "yes" and rec.tenant_id == "-"


def test_context_aware_logger_works_with_the_factory(restore_record_factory, caplog):
    add_context_to_log_record()
    with caplog.at_level(logging.INFO), tenancy.Context(tenant_id="acme"):
        get_logger("tests.adapter").info("with factory", extra={"run_id": 3})
    (rec,) = caplog.records
    assert (rec.tenant_id, rec.run_id) == ("acme", 3)


# -- formatters ------------------------------------------------------------------------


def test_key_value_line_inside_a_context():
    with tenancy.Context(tenant_id="acme", request_id=RID, agent_id="agent_12"):
        rec = record("Creating run", method="POST", status_code=201, duration_ms=45.5)
        TenantContextFilter().filter(rec)
    line = KeyValueFormatter().format(rec)
    assert LINE.match(line), line
    assert line.endswith(
        f'message="Creating run" request_id={RID} tenant_id=acme agent_id=agent_12 '
        "method=POST status_code=201 duration_ms=45.5"
    )


def test_key_value_line_outside_any_context_carries_dashes():
    line = KeyValueFormatter().format(record("startup"))
    assert line.endswith('message="startup" request_id=- tenant_id=-')


def test_key_value_values_are_escaped():
    rec = record('say "hi"\nlevel=ERROR', note="two words", path="/a=b", bad="x\r\ny", n=None)
    line = KeyValueFormatter().format(rec)
    assert "\n" not in line and "\r" not in line
    assert 'message="say \\"hi\\"\\nlevel=ERROR"' in line
    assert 'note="two words"' in line and 'path="/a=b"' in line and 'bad="x\\r\\ny"' in line
    assert "n=-" in line
    assert "é" not in KeyValueFormatter().format(record("café")) and "\\u00e9" in (
        KeyValueFormatter().format(record("café"))
    )


def test_key_value_leaves_out_objects_and_keeps_tracebacks_on_one_line():
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        import sys

        rec = logging.LogRecord("t", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    rec.request = object()
    line = KeyValueFormatter().format(rec)
    assert "request=" not in line
    assert "\n" not in line and "exc_info=" in line and "ValueError: bad\\nthing" in line


def test_json_lines():
    with tenancy.Context(tenant_id="acme", request_id=RID):
        rec = record("café %s", "ok", status_code=200, request=object())
        TenantContextFilter().filter(rec)
    line = JSONFormatter().format(rec)
    assert "\n" not in line and line.isascii()
    data = json.loads(line)
    assert (
        data["message"] == "café ok" and data["level"] == "INFO" and data["logger"] == "tests.log"
    )
    assert (data["tenant_id"], data["request_id"], data["agent_id"]) == ("acme", RID, None)
    assert data["status_code"] == 200 and "request" not in data
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["timestamp"])


def test_json_without_filter_reads_the_current_context():
    with tenancy.Context(tenant_id="acme"):
        data = json.loads(JSONFormatter().format(record()))
    assert data["tenant_id"] == "acme" and data["request_id"] is None


# -- through real requests -------------------------------------------------------------


def test_a_line_logged_in_a_view_carries_that_requests_ids(caller, acme, stream_logger):
    logger, buffer = stream_logger
    response = caller.get("/req/tenant", headers={"X-Tenant-ID": "acme", "X-Request-ID": RID})
    assert response.status_code == 200
    async_line = caller.get("/req/plain-async", headers={"X-Tenant-ID": "acme"})
    logger.info("outside any request")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 3
    assert f'message="tenant view" request_id={RID} tenant_id=acme' in lines[0]
    other = async_line["X-Request-ID"]
    assert f'message="plain async view" request_id={other} tenant_id=acme' in lines[1]
    assert lines[2].endswith('message="outside any request" request_id=- tenant_id=-')


def test_djangos_4xx_warnings_carry_the_request_context(caller, acme):
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.addFilter(TenantContextFilter())
    handler.setFormatter(KeyValueFormatter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        # Django logs these after every middleware has returned, with the request in extra.
        caller.get("/req/member", headers={"X-Tenant-ID": "acme", "X-Request-ID": RID})
        refused = caller.get("/req/tenant", headers={"X-Tenant-ID": "nobody"})
    finally:
        logger.removeHandler(handler)
    forbidden, not_registered = buffer.getvalue().splitlines()
    assert f'message="Forbidden: /req/member" request_id={RID} tenant_id=acme' in forbidden
    rid = refused["X-Request-ID"]
    assert f'message="Forbidden: /req/tenant" request_id={rid} tenant_id=-' in not_registered
