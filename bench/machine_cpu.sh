#!/bin/bash
# Every process's CPU while a command runs (busy jiffies of /proc/stat), its wall and the load:
#     bench/machine_cpu.sh python -m pytest -q -n 3 --dist loadfile
# It counts what bench/suite_cpu.py cannot (detached runs, Slurm jobs, the compiler's workers),
# and also anything else the machine ran meanwhile: quote it from a quiet machine.
read -r _ u n s _ _ irq sirq _ < /proc/stat
b0=$((u + n + s + irq + sirq)); t0=$(date +%s.%N)
"$@"; rc=$?
read -r _ u n s _ _ irq sirq _ < /proc/stat
b1=$((u + n + s + irq + sirq)); t1=$(date +%s.%N)
hz=$(getconf CLK_TCK)
printf 'machine busy CPU: %.1f s over wall %.1f s; exit %d; %s\n' \
    "$(echo "($b1 - $b0) / $hz" | bc -l)" "$(echo "$t1 - $t0" | bc -l)" "$rc" "$(uptime)" >&2
exit $rc
