"""True-positive fixtures of two public secret scanners, read from their Go modules
(fetched through the Go module proxy into the eval cache, never committed):

- gitleaks: the literal strings of each rule's `tps` list
  (`cmd/generate/config/rules/*.go`);
- trufflehog: the input of each detector test's first "valid pattern" case
  (`pkg/detectors/**/*_test.go`), with its `fmt.Sprintf` evaluated from the file's
  string constants.
"""

import json
import os
import pathlib
import re
import subprocess

GITLEAKS = ("github.com/zricethezav/gitleaks/v8", "v8.30.1")
TRUFFLEHOG = ("github.com/trufflesecurity/trufflehog/v3", "v3.90.0")

LITERAL = r'(?:"((?:[^"\\\n]|\\.)*)"|`([^`]*)`)'


def module_dir(cache, module, version):
    env = dict(os.environ, GOMODCACHE=str(cache / "gomod"), GOFLAGS="-mod=mod", GO111MODULE="on")
    out = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], env=env, cwd=cache, capture_output=True, text=True)
    info = json.loads(out.stdout or "{}")
    if "Dir" not in info:
        raise SystemExit(f"cannot fetch {module}@{version}: {info.get('Error') or out.stderr}")
    return pathlib.Path(info["Dir"])


def unquote(match):
    """A Go string literal's value: interpreted ("...") or raw (`...`)."""
    if match[1] is not None and match[0] is None:
        return match[1]
    if match[0] is not None:
        return bytes(match[0], "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")
    return match[1]


def literal_value(m):
    interpreted, raw = m.group(1), m.group(2)
    if interpreted is not None:
        return unquote((interpreted, None))
    return raw


def block_after(s, start):
    """The text from `start` to the bracket that closes the one opened just before it."""
    i, depth = start, 1
    while depth and i < len(s):
        c = s[i]
        if c in "{(":
            depth += 1
        elif c in "})":
            depth -= 1
        elif c == '"':
            j = i + 1
            while j < len(s) and s[j] != '"':
                j += 2 if s[j] == "\\" else 1
            i = j
        elif c == "`":
            i = s.index("`", i + 1)
        i += 1
    return s[start : i - 1]


def gitleaks(cache):
    root = module_dir(cache, *GITLEAKS) / "cmd/generate/config/rules"
    items = []
    for path in sorted(root.glob("*.go")):
        s = path.read_text()
        n = 0
        for m in re.finditer(r"tps\s*:?=\s*(?:append\(tps,\s*)?(?:\[\]string\{|utils\.GenerateSampleSecrets\()", s):
            block = block_after(s, m.end())
            literals = list(re.finditer(LITERAL, block))
            if m.group(0).endswith("GenerateSampleSecrets("):
                literals = literals[1:]  # the first argument names the sample, it is no secret
            for lit in literals:
                text = literal_value(lit)
                # A literal concatenated with generated text is a fragment, not a fixture.
                joined = block[lit.end() :].lstrip().startswith("+") or block[: lit.start()].rstrip().endswith("+")
                # An argument of a generator call (`secrets.NewSecret(...)`) is a regex.
                joined = joined or block[: lit.start()].rstrip().endswith("(")
                if len(text) >= 16 and not joined:
                    items.append({"id": f"gitleaks:{path.stem}:{n}", "set": "gitleaks", "group": path.stem, "text": text})
                    n += 1
    return items


def go_constants(s):
    consts = {}
    for m in re.finditer(r"\b(\w+)\s*=\s*" + LITERAL, s):
        consts.setdefault(m.group(1), literal_value(type("M", (), {"group": lambda self, i, m=m: m.group(i + 1)})()))
    return consts


def evaluate(expr, consts):
    """A test input: a constant, a literal, or fmt.Sprintf over them with %s verbs."""
    expr = expr.strip().rstrip(",")
    if expr in consts:
        return consts[expr]
    lit = re.fullmatch(LITERAL, expr, re.S)
    if lit:
        return literal_value(type("M", (), {"group": lambda self, i, m=lit: m.group(i)})())
    call = re.fullmatch(r"fmt\.Sprintf\(\s*" + LITERAL + r"\s*,(.*)\)", expr, re.S)
    if call:
        fmt = literal_value(type("M", (), {"group": lambda self, i, m=call: m.group(i)})())
        args = [a.strip() for a in call.group(3).split(",")]
        if "%" in fmt.replace("%s", "") or not all(a in consts for a in args):
            return None
        try:
            return fmt.replace("%%", "%").replace("%s", "{}").format(*(consts[a] for a in args))
        except (IndexError, KeyError):
            return None
    return None


def trufflehog(cache):
    root = module_dir(cache, *TRUFFLEHOG) / "pkg/detectors"
    items = []
    for path in sorted(root.rglob("*_test.go")):
        if "integration" in path.name:
            continue
        s = path.read_text()
        consts = go_constants(s)
        case = re.search(r'name:\s*"(?i:valid pattern)[^"]*",\s*\n\s*input:\s*(`[^`]*`|[^\n]*)\n', s)
        if not case:
            continue
        text = evaluate(case.group(1), consts)
        if text and len(text) >= 12:
            detector = str(path.parent.relative_to(root))
            items.append({"id": f"trufflehog:{detector}", "set": "trufflehog", "group": detector.split("/")[0], "text": text})
    return items
