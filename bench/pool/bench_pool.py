"""Python's ThreadPoolExecutor in the thread-pool benchmark (bench_pool.c).

Runs the same scenarios as the C contenders with fewer tasks and prints one
line, "PYRESULT ff fut idle_p50 idle_p99 busy_p50 cpu", in nanoseconds per
task, nanoseconds of latency and percent of a CPU. bench_pool runs it once
per round.
"""
import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def empty():
    return None


def value(x):
    return x


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--idle-probes", type=int, default=50)
    parser.add_argument("--busy-probes", type=int, default=500)
    args = parser.parse_args()
    n = args.tasks
    pool = ThreadPoolExecutor(max_workers=args.workers)
    # Warm up: start the workers.
    list(pool.map(value, range(args.workers * 4)))

    # 1. fire-and-forget: futures dropped at submit; done when the last ran.
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def counted():
        with lock:
            count[0] += 1
            if count[0] == n:
                done.set()

    t0 = time.perf_counter_ns()
    for _ in range(n):
        pool.submit(counted)
    done.wait()
    ff = (time.perf_counter_ns() - t0) / n

    # 2. futures kept and read.
    t0 = time.perf_counter_ns()
    futures = [pool.submit(value, i) for i in range(n)]
    total = sum(f.result() for f in futures)
    fut = (time.perf_counter_ns() - t0) / n
    assert total == n * (n - 1) // 2

    # 3. submit-to-start latency, idle and busy.
    def probe(box, started):
        box.append(time.perf_counter_ns())
        started.set()

    def latency(count_, idle):
        out = []
        for _ in range(count_):
            if idle:
                time.sleep(0.01)
            box = []
            started = threading.Event()
            t = time.perf_counter_ns()
            pool.submit(probe, box, started)
            started.wait()
            out.append(box[0] - t)
        out.sort()
        return out

    idle = latency(args.idle_probes, True)
    busy = latency(args.busy_probes, False)
    idle_p50 = idle[len(idle) // 2]
    idle_p99 = idle[int(0.99 * (len(idle) - 1) + 0.5)]
    busy_p50 = busy[len(busy) // 2]

    # 4. CPU while idle.
    time.sleep(0.1)
    c0 = time.process_time_ns()
    w0 = time.perf_counter_ns()
    time.sleep(0.2)
    cpu = 100.0 * (time.process_time_ns() - c0) / (time.perf_counter_ns() - w0)
    pool.shutdown(wait=True)
    print(f"PYRESULT {ff:.1f} {fut:.1f} {idle_p50} {idle_p99} {busy_p50} {cpu:.3f}")


if __name__ == "__main__":
    main()
