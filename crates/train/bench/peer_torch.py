"""PyTorch peer for examples/bench_pseudo_margin.rs: the margin-consistency notebook's
pseudo-margin training (CNET(10, 512, depth=4), MSE, Adam lr 1e-4, full batch 5000) timed
in epochs/s on the CPU, per thread count.

    python peer_torch.py [EPOCHS] [THREADS,...]      (defaults: 20 epochs, threads 1,2)

The data are random (speed does not depend on the values); one warm-up epoch is not timed.
Prints wall-clock epochs/s and process CPU seconds per epoch (see the Rust example's docs).
"""
import json
import sys
import time

import torch

epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
threads = [int(t) for t in (sys.argv[2] if len(sys.argv) > 2 else "1,2").split(",")]
n, d = 5000, 10

g = torch.Generator().manual_seed(0)
x = torch.rand(n, d, generator=g) * 4 - 2
t = torch.rand(n, 1, generator=g)

results = []
for th in threads:
    torch.set_num_threads(th)
    torch.manual_seed(0)
    # Exactly the notebook's create_sequential_with_depth(10, 512, 4) + sigmoid.
    net = torch.nn.Sequential(
        torch.nn.Linear(d, 512),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 1), torch.nn.Sigmoid(),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    loss_fn = torch.nn.MSELoss()

    def epoch():
        perm = torch.randperm(n)  # DataLoader(shuffle=True) with batch 5000: one shuffled batch
        xb, tb = x[perm], t[perm]
        opt.zero_grad()
        loss = loss_fn(net(xb), tb)
        loss.backward()
        opt.step()
        return loss.item()

    epoch()
    start, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(epochs):
        epoch()
    eps = epochs / (time.perf_counter() - start)
    cpu = (time.process_time() - cpu0) / epochs
    print(f"pytorch {torch.__version__}, {th} thread(s): {eps:.2f} epochs/s "
          f"({1e3 / eps:.1f} ms/epoch wall, {1e3 * cpu:.1f} ms/epoch CPU)")
    results.append({"threads": th, "epochs_per_s": round(eps, 3), "cpu_s_per_epoch": round(cpu, 4)})
print(json.dumps({"peer": "pytorch", "version": torch.__version__, "n": n, "d": d,
                  "epochs": epochs, "results": results}))
