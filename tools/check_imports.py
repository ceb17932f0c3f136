#!/usr/bin/env python3
"""tools/check_imports.py: no import circle, between crates or between the modules of a crate.

A module is a top-level module of a crate's src/ (`src/report.rs` and `src/report/*.rs` are one module,
`report`); it imports another when its files name `crate::OTHER`, or `super::OTHER` from a file of a
submodule folder. Inside each such folder, its files are checked the same way among themselves
(`super::SIBLING`, `crate::FOLDER::SIBLING`). Prints every circle found and exits 1 if there is one;
prints the module graph with -v.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def crates():
    text = (ROOT / "Cargo.toml").read_text()
    members = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S).group(1)
    return re.findall(r'"([^"]+)"', members)


def module_of(src: Path, f: Path) -> str:
    rel = f.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def graph(crate: str):
    src = ROOT / crate / "src"
    edges: dict[str, set[str]] = {}
    for f in sorted(src.rglob("*.rs")):
        m = module_of(src, f)
        if m in ("lib", "main"):
            continue
        text = re.sub(r"//[^\n]*", "", f.read_text())
        text = text.split("#[cfg(test)]")[0]
        names = set(re.findall(r"\bcrate::([a-z_0-9]+)", text))
        if len(f.relative_to(src).parts) == 2:  # a file of a submodule folder: super:: is its parent
            names |= set(re.findall(r"\bsuper::([a-z_0-9]+)", text))
        mods = {module_of(src, p) for p in src.rglob("*.rs")}
        edges.setdefault(m, set()).update(n for n in names if n in mods and n != m)
    return edges


def folder_graphs(crate: str):
    """For each submodule folder of the crate, the graph of its files among themselves."""
    src = ROOT / crate / "src"
    out = {}
    for folder in sorted(p for p in src.rglob("*") if p.is_dir()):
        files = sorted(folder.glob("*.rs"))
        names = {f.stem for f in files if f.stem != "mod"}
        path = "::".join(folder.relative_to(src).parts)
        edges = {}
        for f in files:
            if f.stem == "mod":
                continue
            text = re.sub(r"//[^\n]*", "", f.read_text()).split("#[cfg(test)]")[0]
            used = set(re.findall(r"\bsuper::([a-z_0-9]+)", text))
            for group in re.findall(r"\bsuper::\{([^}]*)\}", text):
                used |= set(re.findall(r"\b([a-z_0-9]+)\b", group))
            used |= set(re.findall(rf"\bcrate::{path}::([a-z_0-9]+)", text))
            edges[f.stem] = {n for n in used if n in names and n != f.stem}
        out[f"{crate}::{path}"] = edges
    return out


def cycles(edges):
    found, state = [], {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                found.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [n])
    return found


def crate_edges():
    names = crates()
    out = {}
    for c in names:
        deps = (ROOT / c / "Cargo.toml").read_text().split("[dependencies]")[1].split("\n[")[0]
        out[c] = {d for d in names if re.search(rf"^{d}(\.workspace|\s*=)", deps, re.M)}
    return out


def report(name, edges, verbose):
    """Prints the circles of `edges` (and the graph itself with `verbose`); whether there is one."""
    if verbose:
        for m in sorted(edges):
            print(f"{name}::{m} -> {', '.join(sorted(edges[m])) or '-'}")
    found = cycles(edges)
    for c in found:
        print(f"{name}:", " -> ".join(c))
    return bool(found)


def main():
    verbose = "-v" in sys.argv
    bad = report("crates", crate_edges(), False)
    for crate in crates():
        bad |= report(crate, graph(crate), verbose)
        for folder, edges in folder_graphs(crate).items():
            bad |= report(folder, edges, verbose)
    if bad:
        sys.exit(1)
    print("no import circle between crates or between the modules of any crate")


if __name__ == "__main__":
    main()
