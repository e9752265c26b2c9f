"""Every public function of the functional API documents its arguments'
shapes and what it returns."""
from __future__ import annotations

import inspect
import re

import pytest

import gpucnn.functional as F


@pytest.mark.parametrize("name", F.__all__)
def test_public_function_documents_arguments_and_result(name):
    fn = getattr(F, name)
    doc = inspect.getdoc(fn) or ""
    assert "Returns" in doc, f"{name}: the docstring does not say what it returns"
    params = [p for p in inspect.signature(fn).parameters if p not in ("self",)]
    # Each argument is named in the text (grouped ones count: "dy, x: ..."),
    # or in the docstring of the function it says the others are "as for".
    for other in re.findall(r"as for\s+(\w+)", doc):
        doc += inspect.getdoc(getattr(F, other)) or ""
    missing = [p for p in params if p not in doc]
    assert not missing, f"{name}: the docstring does not mention {missing}"
