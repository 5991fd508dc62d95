#!/bin/bash
# pyjoule array task: run 20260102-030405-ab12cd, wave w1. Written by pyjoule; do not edit.
# Each task claims batches of psets from /scratch/u/cache dir; 'q' "dq"/runs/20260102-030405-ab12cd/queue/w1 and runs them with 16
# worker processes; results go to /scratch/u/cache dir; 'q' "dq"/runs/20260102-030405-ab12cd/results as they finish.
set -e
cd '/home/u/my project a b'"'"'c"d;e $HOME `id` *'
module load python/3.11
source /opt/site/env.sh
export PYTHONPATH='/home/u/.pyjoule/lib $x:/home/u/my project a b'"'"'c"d;e $HOME `id` *'
export OMP_PLACES=cores
export GREETING='hello world; a b'"'"'c"d;e $HOME `id` *'
exec '/home/u/.pyjoule/envs/py 3.11/bin/python' -m pyjoule.worker '/scratch/u/cache dir; '"'"'q'"'"' "dq"/runs/20260102-030405-ab12cd' --slurm w1 --workers 16
