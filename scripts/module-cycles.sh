#!/usr/bin/env bash
# The worker's module graph: which of its top-level modules (config, capture,
# connections, ...) name which others (`crate::a::b`, `use crate::{a, b}`,
# `super::x`), read from worker/src/**/*.rs. Exits 1 and prints the cycle when
# modules depend on each other in a circle; dependencies must point down the
# pipeline (docs/architecture.md, "Module graph").
#   scripts/module-cycles.sh                 check (what scripts/test.sh runs)
#   scripts/module-cycles.sh --edges         also print every edge `a -> b`
#   scripts/module-cycles.sh --layers        also print the modules by layer, bottom first
#   scripts/module-cycles.sh --submodules    nodes are first-level submodules (otel::sampler)
#   scripts/module-cycles.sh --dot           the graph in Graphviz dot, no check
# Code in `#[cfg(test)]` modules counts too: tests must not need a cycle either.
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import pathlib, re, sys

args = set(sys.argv[1:])
depth = 2 if "--submodules" in args else 1
src = pathlib.Path("worker/src")

# Comments, strings and char literals are blanked first so that text like
# "see crate::x" in a doc comment or a string is not taken for a reference.
NOISE = re.compile(
    r'r(#*)".*?"\1'          # raw strings
    r'|b?"(?:\\.|[^"\\])*"'  # strings
    r"|b?'(?:\\.|[^'\\])'"   # char literals (not lifetimes)
    r"|//[^\n]*"             # line and doc comments
    r"|/\*.*?\*/",           # block comments
    re.S,
)
MOD_OPEN = re.compile(r"\bmod\s+(\w+)\s*\{")
PATH = re.compile(r"\b(crate|super)((?:\s*::\s*(?:\w+|\{))+)")


def module_of(path):
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def expand(text, start):
    """Paths named by a `::`-chain starting at text[start:] (a `{...}` group
    gives several); each is a list of segments."""
    out, segs, i = [], [], start
    while True:
        m = re.match(r"\s*::\s*", text[i:])
        if not m:
            break
        i += m.end()
        if text[i] == "{":
            level, j, item_start, items = 0, i, i + 1, []
            while True:
                c = text[j]
                if c == "{":
                    level += 1
                elif c == "}":
                    level -= 1
                    if level == 0:
                        items.append(text[item_start:j])
                        break
                elif c == "," and level == 1:
                    items.append(text[item_start:j])
                    item_start = j + 1
                j += 1
            for item in items:
                item = item.strip()
                head = re.match(r"(\w+)", item)
                if not head or head.group(1) == "self":
                    out.append(segs)
                    continue
                tails = expand(item, head.end()) or [[]]
                out.extend(segs + [head.group(1)] + t for t in tails)
            return out
        word = re.match(r"\w+", text[i:])
        if not word:
            break  # a glob import (`::*`)
        segs.append(word.group(0))
        i += word.end()
    return [segs] if segs else out


def references(path):
    text = NOISE.sub(lambda m: " " * len(m.group(0)), path.read_text())
    here = module_of(path)
    # Inline modules (mod tests { ... }) move `super::` one level down.
    opens = {m.end() - 1: m.group(1) for m in MOD_OPEN.finditer(text)}
    stack, level, inline_at = [], 0, {}
    for i, c in enumerate(text):
        if c == "{":
            level += 1
            if i in opens:
                stack.append((level, opens[i]))
        elif c == "}":
            if stack and stack[-1][0] == level:
                stack.pop()
            level -= 1
        inline_at[i] = [name for _, name in stack]
    for m in PATH.finditer(text):
        root = m.group(1)
        for segs in expand(text, m.start() + len(root)):
            if root == "crate":
                yield segs
                continue
            base = here + inline_at.get(m.start(), [])
            ups = 1
            while segs and segs[0] == "super":
                ups, segs = ups + 1, segs[1:]
            yield base[: len(base) - ups] + segs


nodes_of_files = {}
edges = {}
for path in sorted(src.rglob("*.rs")):
    if path.name in ("lib.rs", "main.rs") and path.parent == src:
        continue  # the crate root and the binary sit above every module
    node = "::".join(module_of(path)[:depth])
    edges.setdefault(node, set())
    for segs in references(path):
        if not segs or segs[0] in ("self", "crate", "super"):
            continue
        target = "::".join(segs[:depth])
        if depth == 2 and len(segs) >= 2 and not (src / segs[0]).is_dir():
            target = segs[0]  # an item of a top-level file module, not a submodule
        is_module = (src / segs[0]).is_dir() or (src / f"{segs[0]}.rs").exists()
        if is_module and target != node:
            edges[node].add(target)

if "--dot" in args:
    print("digraph worker {")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f'  "{a}" -> "{b}";')
    print("}")
    sys.exit(0)
if "--edges" in args:
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f"{a} -> {b}")

# Depth-first search; a back edge closes a cycle, printed from where it starts.
state, path, cycles = {}, [], []


def visit(n):
    state[n] = "open"
    path.append(n)
    for m in sorted(edges.get(n, ())):
        if state.get(m) == "open":
            cycles.append(path[path.index(m):] + [m])
        elif m not in state:
            visit(m)
    path.pop()
    state[n] = "done"


sys.setrecursionlimit(10000)
for n in sorted(edges):
    if n not in state:
        visit(n)
if cycles:
    print(f"module cycles among the worker's modules ({len(cycles)}):", file=sys.stderr)
    for c in cycles:
        print("  " + " -> ".join(c), file=sys.stderr)
    sys.exit(1)
if "--layers" in args:
    # A module's layer is one above the highest module it names.
    layer = {}

    def layer_of(n):
        if n not in layer:
            layer[n] = 1 + max((layer_of(m) for m in edges.get(n, ())), default=-1)
        return layer[n]

    for n in edges:
        layer_of(n)
    for level in range(max(layer.values()) + 1):
        names = sorted(n for n, l in layer.items() if l == level)
        print(f"layer {level}: {', '.join(names)}")
print(f"no module cycle among {len(edges)} worker modules")
PY
