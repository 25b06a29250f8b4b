// Runs one db/queries script BENCH_REPS times in this shell and prints each run's milliseconds,
// so node's start-up and the connection (seconds, whatever the data) stay out of the figure:
//   BENCH_SCRIPT=db/queries/x.js BENCH_WARMUP=ping.js BENCH_REPS=5 BENCH_BUDGET_MS=300000 \
//     mongosh --quiet "$URI" bench/mongosh_repeat.js
// The script sees the same environment (FROM, UNTIL, ...). After BENCH_BUDGET_MS in total no
// further run starts. Marks (read by bench/store_queries.py): "BENCH_RUN i" before a run's output,
// "BENCH_ELAPSED_MS n" after it, "BENCH_STOPPED" when the budget ended the runs early.
load(process.env.BENCH_WARMUP);
const reps = parseInt(process.env.BENCH_REPS, 10);
const budgetMs = parseInt(process.env.BENCH_BUDGET_MS, 10);
let spentMs = 0;
for (let i = 0; i < reps; i++) {
  if (spentMs > budgetMs) {
    print("BENCH_STOPPED");
    break;
  }
  print("BENCH_RUN " + i);
  const started = Date.now();
  load(process.env.BENCH_SCRIPT);
  const elapsed = Date.now() - started;
  spentMs += elapsed;
  print("BENCH_ELAPSED_MS " + elapsed);
}
