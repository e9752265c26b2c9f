"""Source-to-source pass over preprocessed kernel text (``g++ -E`` output).

Only what a header cannot express is rewritten: ``__shared__`` declarations
(so each one becomes a registered slot that the scheduler poisons and sizes)
and ``extern __shared__`` arrays (which point at the launch's dynamic shared
memory). Every rewrite keeps the line count, so ``__LINE__`` and debug info
still name the original lines. The ``extern "C" __global__`` signatures found
here drive the entry shims and the argument checks.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<dir>(?<![^\n])[ \t]*\#[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\\n]|\\.)*')
  | (?P<num>\.?\d(?:[eEpP][+-]|[\w.])*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>::|->|[^\sA-Za-z_0-9])
""", re.X)
INOUT_MARK = "__gpucnn_inout__"  # what GPUCNN_INOUT expands to in emulator builds
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", INOUT_MARK}
_SKIP_BEFORE_NAME = {"void", "static", "inline", "__forceinline__", "__noinline__", "__host__", "__device__"}
_ATTR_GROUPS = {"__align__", "alignas", "__attribute__", "__launch_bounds__"}
_OPEN, _CLOSE = "([{", ")]}"


@dataclass
class Tok:
    kind: str
    text: str
    start: int
    end: int


@dataclass
class Param:
    name: str
    decl: str
    inout: bool = False  # marked GPUCNN_INOUT: read and written, so neither poisoned nor checked


@dataclass
class Kernel:
    name: str
    params: list[Param]
    launch_bounds: str | None
    owner: int  # 1-based index: the shared-memory owner id of this kernel's body
    body: tuple[int, int] = field(default=(0, 0), repr=False)


class TranslateError(ValueError):
    pass


def lex(text: str) -> list[Tok]:
    return [Tok(m.lastgroup, m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)
            if m.lastgroup not in ("ws", "dir")]


def _match(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing the one at ``i``."""
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j].text
        if t in _OPEN:
            depth += 1
        elif t in _CLOSE:
            depth -= 1
            if depth == 0:
                return j
    raise TranslateError(f"unbalanced {toks[i].text!r} at offset {toks[i].start}")


def _scopes(toks: list[Tok]) -> tuple[list[bool], list[bool]]:
    """Per token: inside a function-like brace, inside an ``extern "C" {`` block."""
    in_func, in_c, stack = [], [], []
    for i, t in enumerate(toks):
        if t.text == "{":
            p1 = toks[i - 1].text if i else ""
            p2 = toks[i - 2].text if i > 1 else ""
            p3 = toks[i - 3].text if i > 2 else ""
            if p1 == '"C"' and p2 == "extern":
                stack.append("C")
            elif p1 == "namespace" or (p2 == "namespace" and toks[i - 1].kind == "id") or p3 == "namespace":
                stack.append("ns")
            else:
                stack.append("f")
        elif t.text == "}" and stack:
            stack.pop()
        in_func.append("f" in stack)
        in_c.append("C" in stack)
    return in_func, in_c


def _split_commas(toks: list[Tok], lo: int, hi: int) -> list[tuple[int, int]]:
    parts, depth, start = [], 0, lo
    for j in range(lo, hi):
        t = toks[j].text
        if t in _OPEN or t == "<":
            depth += 1
        elif t in _CLOSE or t == ">":
            depth -= 1
        elif t == "," and depth == 0:
            parts.append((start, j))
            start = j + 1
    if start < hi:
        parts.append((start, hi))
    return parts


def _params(text: str, toks: list[Tok], lo: int, hi: int) -> list[Param]:
    out = []
    for n, (a, b) in enumerate(_split_commas(toks, lo, hi)):
        decl = text[toks[a].start:toks[b - 1].end]
        if decl.strip() == "void" and b - a == 1:
            continue
        ids = [t.text for t in toks[a:b] if t.kind == "id" and t.text not in _QUALIFIERS]
        if "[" in (t.text for t in toks[a:b]):
            ids = [t.text for t in toks[a:b][:[t.text for t in toks[a:b]].index("[")] if t.kind == "id"]
        inout = any(t.text == INOUT_MARK for t in toks[a:b])
        decl = " ".join(decl.replace(INOUT_MARK, "GPUCNN_INOUT").split())
        out.append(Param(ids[-1] if len(ids) > 1 else f"arg{n}", decl, inout))
    return out


def find_kernels(text: str, toks: list[Tok], in_func, in_c) -> list[Kernel]:
    kernels: list[Kernel] = []
    for i, t in enumerate(toks):
        if t.text != "__global__" or in_func[i]:
            continue
        k = i - 1
        while k >= 0 and toks[k].text in _SKIP_BEFORE_NAME | {"__forceinline__"}:
            k -= 1
        if not (in_c[i] or (k >= 1 and toks[k].text == '"C"' and toks[k - 1].text == "extern")):
            continue  # C++ linkage (e.g. a template): not reachable through get_function
        j, bounds = i + 1, None
        while j < len(toks):
            tj = toks[j]
            if tj.text == "__launch_bounds__":
                close = _match(toks, j + 1)
                args = _split_commas(toks, j + 2, close)
                bounds = text[toks[args[0][0]].start:toks[args[0][1] - 1].end] if args else None
                j = close + 1
            elif tj.text in _SKIP_BEFORE_NAME:
                j += 1
            else:
                break
        if j + 1 >= len(toks) or toks[j].kind != "id" or toks[j + 1].text != "(":
            continue
        close = _match(toks, j + 1)
        if close + 1 >= len(toks) or toks[close + 1].text != "{":
            continue  # a declaration; the definition is found on its own
        end = _match(toks, close + 1)
        kernels.append(Kernel(toks[j].text, _params(text, toks, j + 2, close), bounds,
                              len(kernels) + 1, (close + 1, end)))
    return kernels


def _group_end(toks: list[Tok], j: int) -> int:
    """For an attribute-like token at ``j`` followed by (...), the index after it."""
    return _match(toks, j + 1) + 1 if j + 1 < len(toks) and toks[j + 1].text == "(" else j + 1


def _strip_attrs(toks: list[Tok], lo: int, hi: int) -> list[Tok]:
    out, j = [], lo
    while j < hi:
        if toks[j].text in _ATTR_GROUPS:
            j = _group_end(toks, j)
        elif toks[j].text in ("__shared__", "static", "extern"):
            j += 1
        else:
            out.append(toks[j])
            j += 1
    return out


def _decl_span(toks: list[Tok], i: int) -> tuple[int, int]:
    """[first token, index of the ';') of the declaration containing token ``i``."""
    a = i
    while a > 0 and toks[a - 1].text not in (";", "{", "}", ":"):
        a -= 1
    b, depth = i, 0
    while b < len(toks) and not (toks[b].text == ";" and depth == 0):
        depth += toks[b].text in _OPEN
        depth -= toks[b].text in _CLOSE
        b += 1
    if b >= len(toks):
        raise TranslateError(f"unterminated __shared__ declaration at offset {toks[i].start}")
    return a, b


def _declarators(toks: list[Tok]) -> list[tuple[str, str, str]]:
    """(type, name, array suffix) of each declarator of a simple declaration."""
    out, base = [], None
    for n, (a, b) in enumerate(_split_commas(toks, 0, len(toks))):
        part = toks[a:b]
        texts = [t.text for t in part]
        if "=" in texts:
            raise TranslateError("a __shared__ variable cannot have an initializer")
        cut = texts.index("[") if "[" in texts else len(texts)
        names = [k for k in range(cut) if part[k].kind == "id" and texts[k] not in _QUALIFIERS]
        if not names:
            raise TranslateError(f"cannot parse __shared__ declaration {' '.join(texts)!r}")
        k = names[-1]
        typ = " ".join(texts[:k])
        if n == 0:
            base = " ".join(t for t in texts[:k] if t not in "*&")
        else:
            typ = f"{base} {typ}"
        out.append((typ, texts[k], " ".join(texts[k + 1:])))
    return out


def kernels_in(text: str) -> list[Kernel]:
    """The extern "C" kernels that preprocessed ``text`` defines."""
    toks = lex(text)
    return find_kernels(text, toks, *_scopes(toks))


def translate(text: str) -> tuple[str, list[Kernel]]:
    toks = lex(text)
    in_func, in_c = _scopes(toks)
    kernels = find_kernels(text, toks, in_func, in_c)
    edits: list[tuple[int, int, str]] = []
    tag = 0
    i = 0
    while i < len(toks):
        if toks[i].text != "__shared__":
            i += 1
            continue
        a, b = _decl_span(toks, i)
        decls = _declarators(_strip_attrs(toks, a, b))
        if "extern" in (t.text for t in toks[a:i]):
            typ, name, dims = decls[0]
            if in_func[i]:
                new = f"{typ}* const {name} = reinterpret_cast<{typ}*>(gpucnn_dyn_smem);"
            else:
                new = f"static gpucnn_emu::DynSmem<{typ}> {name};"
        else:
            owner = next((k.owner for k in kernels if k.body[0] < i < k.body[1]), 0)
            new = ""
            for typ, name, dims in decls:
                tag += 1
                new += (f"struct gpucnn_smem_tag_{tag} {{ static const char* name() {{ return \"{name}\"; }} }}; "
                        f"auto& {name} = gpucnn_emu::SmemSlot<{typ} {dims}, gpucnn_smem_tag_{tag}, {owner}>::get(); ")
        lo, hi = toks[a].start, toks[b].end
        edits.append((lo, hi, new + "\n" * text.count("\n", lo, hi)))
        i = b + 1
    for lo, hi, new in reversed(edits):
        text = text[:lo] + new + text[hi:]
    return text, kernels


def shims(kernels: list[Kernel]) -> str:
    out = ['\n# 1 "<gpucnn-emulator-shims>"']
    for k in kernels:
        n, lb = k.name, f"(int)({k.launch_bounds})" if k.launch_bounds else "0"
        out.append(f'extern "C" GPUCNN_EXPORT void gpucnn_shim_{n}(void** a) '
                   f'{{ gpucnn_emu::Sig<decltype({n})>::call({n}, a); }}')
        out.append(f'extern "C" GPUCNN_EXPORT const uint32_t* gpucnn_types_{n}() '
                   f'{{ return gpucnn_emu::Sig<decltype({n})>::codes; }}')
        out.append(f'extern "C" GPUCNN_EXPORT int gpucnn_lb_{n}() {{ return {lb}; }}')
    return "\n".join(out) + "\n"
