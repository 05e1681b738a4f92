#!/usr/bin/env bash
# bench/check_cpu_goals.sh on this machine, --quick, without PyTorch, the
# binary as its own baseline: it must write the table and the JSON with every
# goal, mark the PyTorch goals NOT MEASURED and so never answer PASS (exit 1 or
# 3, whatever this machine's speed), and refuse bad usage with exit 2 and a
# message naming the option.
#   tests/bench/test_check_cpu_goals.sh SOURCE_DIR MDPS
set -uo pipefail
src=$1 mdps=$2
script=$src/bench/check_cpu_goals.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
check() {  # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1"; fail=1; fi
}

bash "$script" --mdps "$mdps" --quick --no-pytorch --baseline "$mdps" --out "$tmp/run" >"$tmp/out.txt" 2>"$tmp/err.txt"
rc=$?
cat "$tmp/out.txt"
check "exit 1 (a goal missed) or 3 (not all measured), never 0 or 2: got $rc" test $rc -eq 1 -o $rc -eq 3
check "summary.md written" test -s "$tmp/run/summary.md"
python3 - "$tmp/run/summary.json" <<'PY' || fail=1
import json, sys
s = json.load(open(sys.argv[1]))
g = {r["goal"]: r for r in s["goals"]}
errors = []
if len(g) != 8: errors.append(f"{len(g)} goals, expected 8")
for name, r in g.items():
    if "PyTorch" in name and r["verdict"] != "NOT MEASURED": errors.append(f"{name}: {r['verdict']} without PyTorch")
fwd = g.get("forward, of the FP32 FMA peak", {})
if fwd.get("verdict") not in ("PASS", "FAIL") or not fwd.get("measured", "").endswith("%"):
    errors.append(f"forward share not measured: {fwd}")
base = [r for n, r in g.items() if n.startswith("no regression")]
if not base or base[0]["verdict"] not in ("PASS", "FAIL"): errors.append(f"baseline not measured: {base}")
if s["verdict"] == "PASS": errors.append("verdict PASS with goals not measured")
if not (0 < s["unet"]["forward_of_peak"] < 2): errors.append(f"forward_of_peak {s['unet']['forward_of_peak']}")
if len(s["baseline"]["forward_s"]["pairs"]) != 2: errors.append("baseline pairs")
print("summary.json:", "; ".join(errors) if errors else "every goal present, PyTorch goals NOT MEASURED")
sys.exit(1 if errors else 0)
PY

bash "$script" --mdps "$mdps" --bogus >/dev/null 2>"$tmp/usage.txt"
rc=$?
check "an unknown option: exit 2 naming it (got $rc)" test $rc -eq 2
check "  ... the message names --bogus" grep -q -- "--bogus" "$tmp/usage.txt"
bash "$script" --mdps "$mdps" --python "$tmp/no-such-python" >/dev/null 2>"$tmp/py.txt"
rc=$?
check "a --python that does not exist: exit 2 (got $rc)" test $rc -eq 2
check "  ... the message names the path" grep -q "no-such-python" "$tmp/py.txt"
bash "$script" --mdps "$mdps" --runs 0 --no-pytorch >/dev/null 2>"$tmp/runs.txt"
rc=$?
check "--runs 0: exit 2 (got $rc)" test $rc -eq 2
exit $fail
