"""The detection evaluation: builds every set, runs the guard's engine and
detect-secrets on the same items in the same run, and prints recall and false-positive
rates per set and per format, for the tuning split and the held-out split apart.

Run it with `just eval` (scripts/eval.sh installs what it needs). Misses are printed for
the tuning split only: the held-out split is for measuring, never for reading.
"""

import argparse
import collections
import hashlib
import json
import pathlib
import random
import subprocess
import sys
import tempfile

import fixtures
import injection_sets as injection
import secret_sets

POSITIVE = {"formats", "passwords", "wrapped", "gitleaks", "trufflehog", "paste-secrets", "attacks", "doc-attacks", "dilution"}
SECRET_SETS = ["formats", "passwords", "wrapped", "gitleaks", "trufflehog", "paste-secrets", "hard-negatives", "pastes", "code", "benign-secrets"]
# Sets whose items are untrusted content (tool results, documents): scanned as such.
UNTRUSTED_SETS = {"doc-attacks", "doc-benign"}
INJECTION_SETS = ["attacks", "doc-attacks", "dilution", "benign", "ordinary", "doc-benign"]
DATA = pathlib.Path(__file__).parent / "data"


def committed_sets():
    """The hand-written sets in eval/data: ordinary prompts in several languages, and
    realistic pastes with and without secrets (one item per secret, its span marked)."""
    items = []
    for n, line in enumerate((DATA / "ordinary_prompts.jsonl").read_text().splitlines()):
        row = json.loads(line)
        items.append({"id": f"ord:{n}", "set": "ordinary", "group": row["lang"], "text": row["text"]})
    for n, line in enumerate((DATA / "pastes.jsonl").read_text().splitlines()):
        row = json.loads(line)
        if not row["secrets"]:
            items.append({"id": f"paste:{n}", "set": "pastes", "group": row["group"], "text": row["text"]})
        for k, secret in enumerate(row["secrets"]):
            start = len(row["text"][: row["text"].index(secret)].encode())
            items.append({"id": f"paste:{n}:{k}", "set": "paste-secrets", "group": row["group"], "text": row["text"], "span": [start, start + len(secret.encode())]})
    return items


def split(item):
    """30 % of every set, chosen by a hash of the item's id, is held out."""
    return "holdout" if int(hashlib.sha256(item["id"].encode()).hexdigest()[:8], 16) % 10 < 3 else "tune"


def guard_scan(scanner, items):
    payload = "".join(json.dumps({"id": i["id"], "text": i["text"], "untrusted": i["set"] in UNTRUSTED_SETS}) + "\n" for i in items)
    out = subprocess.run([scanner], input=payload, capture_output=True, text=True, check=True)
    return {r["id"]: r["findings"] for r in map(json.loads, out.stdout.splitlines())}


def detect_secrets_scan(items):
    """Lines detect-secrets reports per item, each item scanned as a file of its own."""
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    found = {}
    with tempfile.TemporaryDirectory() as tmp, default_settings():
        for n, item in enumerate(items):
            path = pathlib.Path(tmp) / f"item-{n}.txt"
            path.write_text(item["text"])
            collection = SecretsCollection()
            collection.scan_file(str(path))
            found[item["id"]] = sorted({s.line_number for s in collection.data.get(str(path), set())})
    return found


def guard_hit(item, findings, kind):
    relevant = [f for f in findings if f["kind"] == kind]
    if "span" in item:
        start, end = item["span"]
        return any(f["start"] < end and f["end"] > start for f in relevant)
    return bool(relevant)


def ds_hit(item, lines):
    if "span" in item:
        return item["text"].count("\n", 0, item["span"][0]) + 1 in lines
    return bool(lines)


def rate(hits):
    return (100.0 * sum(hits) / len(hits)) if hits else float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scanner", required=True, help="the guard engine's scan example binary")
    parser.add_argument("--cache", required=True, type=pathlib.Path, help="where Go modules are fetched")
    parser.add_argument("--out", type=pathlib.Path, help="write every result here as JSON")
    parser.add_argument("--misses", type=int, default=15, help="misses to print per set (tuning split)")
    parser.add_argument("--registry", type=pathlib.Path, help="cargo's unpacked crate sources, for the code set")
    args = parser.parse_args()

    rng = random.Random(20261127)
    items = (
        secret_sets.format_items(rng)
        + secret_sets.password_items(rng)
        + secret_sets.wrapped_items(rng)
        + secret_sets.hard_negatives(rng)
        + (secret_sets.code_negatives(pathlib.Path(__file__).parent.parent / "Cargo.lock", args.registry) if args.registry else [])
        + fixtures.gitleaks(args.cache)
        + fixtures.trufflehog(args.cache)
        + injection.attacks(rng)
        + injection.documents(rng)
        + injection.benign(rng)
        + committed_sets()
    )
    carriers = [i["text"] for i in items if i["set"] == "benign" and i["group"] in ("books", "spikee-documents")]
    items += injection.dilution(rng, carriers)
    for item in items:
        item["split"] = split(item)
    guard = guard_scan(args.scanner, items)
    secret_items = [i for i in items if i["set"] in SECRET_SETS or i["set"] == "benign"]
    ds = detect_secrets_scan(secret_items)

    rows = []
    for item in items:
        kind = "secret" if item["set"] in SECRET_SETS else "injection"
        row = {
            "id": item["id"],
            "set": item["set"],
            "group": item["group"],
            "split": item["split"],
            "positive": item["set"] in POSITIVE,
            "guard": guard_hit(item, guard[item["id"]], kind),
            "rules": sorted({f["rule"] for f in guard[item["id"]] if f["kind"] == kind}),
        }
        if item["id"] in ds and item["set"] != "benign":
            row["detect_secrets"] = ds_hit(item, ds[item["id"]])
        rows.append(row)
        if item["set"] == "formats":
            # A secret is not an injection: the injection traps should stay quiet here.
            injected = [f for f in guard[item["id"]] if f["kind"] == "injection"]
            plain = {k: v for k, v in row.items() if k != "detect_secrets"}
            rows.append(dict(plain, set="secrets-as-injection", positive=False, guard=bool(injected)))
        if item["set"] in INJECTION_SETS:
            # The rules alone, without the learned detector: what it adds.
            rules_only = [f for f in guard[item["id"]] if f["kind"] == "injection" and f["trap"] != "classifier"]
            rows.append(dict(row, set=item["set"] + "-rules", guard=bool(rules_only)))
        if item["set"] == "benign":
            # Benign prompts are also negatives for the secret traps (code, prose, documents).
            rows.append(dict(row, set="benign-secrets", detect_secrets=bool(ds[item["id"]]), guard=guard_hit(item, guard[item["id"]], "secret"),
                             rules=sorted({f["rule"] for f in guard[item["id"]] if f["kind"] == "secret"})))

    print(f"{'set':<16} {'measure':<10} {'items':>6} {'guard tune':>11} {'guard held':>11} {'d-s tune':>9} {'d-s held':>9}")
    for name in SECRET_SETS + INJECTION_SETS + [f"{n}-rules" for n in INJECTION_SETS] + ["secrets-as-injection"]:
        subset = [r for r in rows if r["set"] == name]
        measure = "recall" if subset and subset[0]["positive"] else "false pos"
        cells = []
        for tool in ["guard", "detect_secrets"]:
            for part in ["tune", "holdout"]:
                hits = [r[tool] for r in subset if r["split"] == part and tool in r]
                cells.append(f"{rate(hits):.1f} %" if hits else "-")
        print(f"{name:<16} {measure:<10} {len(subset):>6} {cells[0]:>11} {cells[1]:>11} {cells[2]:>9} {cells[3]:>9}")

    secrets_all = [r for r in rows if r["set"] in SECRET_SETS and r["positive"]]
    cells = []
    for tool in ["guard", "detect_secrets"]:
        for part in ["tune", "holdout"]:
            hits = [r[tool] for r in secrets_all if r["split"] == part and tool in r]
            cells.append(f"{rate(hits):.1f} %")
    print(f"{'all secrets':<16} {'recall':<10} {len(secrets_all):>6} {cells[0]:>11} {cells[1]:>11} {cells[2]:>9} {cells[3]:>9}")

    print("\nper format (formats set, all contexts; guard / detect-secrets recall):")
    by_group = collections.defaultdict(list)
    for r in rows:
        if r["set"] == "formats":
            by_group[r["group"]].append(r)
    for group, rs in sorted(by_group.items()):
        print(f"  {group:<28} {rate([r['guard'] for r in rs]):6.1f} % {rate([r['detect_secrets'] for r in rs]):6.1f} %")
    for name in ["hard-negatives", "pastes", "paste-secrets", "benign-secrets", "benign", "ordinary", "attacks", "doc-attacks", "doc-benign", "dilution"]:
        print(f"\nper group of {name} (guard):")
        groups = collections.defaultdict(list)
        for r in rows:
            if r["set"] == name:
                groups[r["group"]].append(r["guard"])
        for group, hits in sorted(groups.items()):
            print(f"  {group:<28} {rate(hits):6.1f} %  of {len(hits)}")

    # Precision on the pastes: of the secret findings there, how many fall on a secret.
    by_id = {i["id"]: i for i in items}
    true_spans = collections.defaultdict(list)
    for i in items:
        if i["set"] == "paste-secrets":
            true_spans[i["text"]].append(i["span"])
    found = wrong = 0
    seen = set()
    for i in items:
        if i["set"] in ("pastes", "paste-secrets") and i["text"] not in seen:
            seen.add(i["text"])
            for f in guard[i["id"]]:
                if f["kind"] == "secret":
                    hit = any(f["start"] < e and f["end"] > s for s, e in true_spans.get(i["text"], []))
                    found, wrong = found + hit, wrong + (not hit)
    precision = 100.0 * found / (found + wrong) if found + wrong else float("nan")
    print(f"\nsecret findings on the pastes: {found + wrong}, of which on a secret {found}: precision {precision:.1f} %")

    training = pathlib.Path(__file__).parent.parent / "traps/src/classifier/training.json"
    if training.exists():
        report = json.loads(training.read_text())
        print("\nlearned detector, from its training run (eval/train_injection.py): leave-one-source-out recall")
        for source, figure in sorted(report.get("leave_one_source_out", {}).items()):
            print(f"  {source:<28} {figure['recall']:6.1f} %  of {figure['attacks']} (threshold at 1 % FP on the other sources' held-out benign)")

    print("\nmistakes on the tuning split (missed positives, flagged negatives):")
    for name in SECRET_SETS + INJECTION_SETS:
        wrong = [r for r in rows if r["set"] == name and r["split"] == "tune" and r["guard"] != r["positive"]]
        for r in wrong[: args.misses]:
            text = by_id[r["id"]]["text"].replace("\n", "\\n")
            print(f"  {r['id']:<44} {','.join(r['rules']) or '-':<30} {text[:110]}")
        if len(wrong) > args.misses:
            print(f"  ... and {len(wrong) - args.misses} more in {name}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
