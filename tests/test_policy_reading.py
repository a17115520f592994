"""Reading policy documents from YAML and JSON text: strict, with line numbers."""

import pytest

from app.kit.errors import InvalidInput
from app.policies.service import read_document_text


def test_yaml_reading_is_strict() -> None:
    text = b"key: x\ntitle: t\ncountries: [NO, NL]\nwhen: 2024-01-01\nflag: yes\n"
    data = read_document_text(text, "yaml")
    assert data["countries"] == ["NO", "NL"]  # not False: only true/false are booleans
    assert data["when"] == "2024-01-01"
    assert data["flag"] == "yes"
    with pytest.raises(InvalidInput) as caught:
        read_document_text(b"key: x\ntitle: t\nkey: y\n", "yaml")
    assert "line 3" in caught.value.errors[0].msg
    assert "twice" in caught.value.errors[0].msg
    with pytest.raises(InvalidInput, match="aliases"):
        read_document_text(b"a: &x [1, 2]\nb: *x\n", "yaml")
    with pytest.raises(InvalidInput) as caught:
        read_document_text(b"key: x\nrules:\n  - id: a\n   title: b\n", "yaml")
    assert "line 4" in caught.value.errors[0].msg
    with pytest.raises(InvalidInput, match="twice"):
        read_document_text(b'{"key": "a", "key": "b"}', "json")
    with pytest.raises(InvalidInput, match="line 2, column 1"):
        read_document_text(b'{"key": "a",\n}', "json")
