// The anchor of the queue benchmark: graphile-worker processing N no-op jobs on the same
// PostgreSQL (jobs inserted first, then one worker process with concurrency 8 drains them).
// Prints "jobs/s <rate>". Usage: DATABASE_URL=postgres://... node graphile.cjs N
const { run, runMigrations } = require("graphile-worker");
const { Client } = require("pg");

async function main() {
  const n = Number(process.argv[2] || 20000);
  const connectionString = process.env.DATABASE_URL;
  await runMigrations({ connectionString });
  const client = new Client({ connectionString });
  await client.connect();
  await client.query(
    "select graphile_worker.add_job('noop', json_build_object('i', i)) from generate_series(1, $1) i",
    [n],
  );
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const started = performance.now();
  const runner = await run({
    connectionString,
    concurrency: 8,
    noHandleSignals: true,
    pollInterval: 1000,
    taskList: {
      noop: async () => {
        done += 1;
        if (done === n) finish();
      },
    },
  });
  await finished;
  await runner.stop();
  const seconds = (performance.now() - started) / 1000;
  const left = await client.query("select count(*)::int as n from graphile_worker.jobs");
  await client.end();
  console.log(`jobs/s ${(n / seconds).toFixed(0)}`);
  console.log(`jobs left in the table: ${left.rows[0].n}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
