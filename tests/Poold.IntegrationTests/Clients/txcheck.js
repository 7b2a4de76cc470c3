// A node-postgres client run against Poold in transaction mode by TransactionModeDriverTests:
// node txcheck.js HOST PORT DATABASE USER TABLE CLIENTS ROUNDS (NODE_PATH names the folder that holds the pg module).
// CLIENTS connections, all at once on one event loop, each with its own search_path schema (txdrv_K, made by the test)
// and statement_timeout, run ROUNDS transactions with named prepared statements: node-postgres parses a name once per
// connection and from then on sends only Bind and Execute, so every later use relies on Poold preparing it on whatever
// server connection runs that transaction. Each transaction inserts, reads the client's own rows and its settings; every
// fifth fails on a division by zero and is rolled back. Between transactions a named autocommit read (balanced onto the
// standbys). Prints "client_K_rows=N" and "errors=N"; a wrong answer prints "wrong_K=..." and an exception
// "exception_K=...".
'use strict';
const { Client } = require('pg');

const [host, port, database, user, table] = process.argv.slice(2, 7);
const clients = Number(process.argv[7]);
const rounds = Number(process.argv[8]);
const errors = [];
const committed = new Array(clients).fill(0);

function check(ok, client, what) {
  if (!ok) {
    errors.push(`${client}: ${what}`);
    console.log(`wrong_${client}=${what}`);
  }
}

async function run(k) {
  const schema = `txdrv_${k}`;
  const timeout = `${k + 1}s`;
  const client = new Client({ host, port: Number(port), database, user, application_name: `node-pg-tx-${k}` });
  await client.connect();
  try {
    await client.query(`SET search_path = ${schema}, public`);
    await client.query(`SET statement_timeout = '${timeout}'`);
    const insert = { name: 'insert_row', text: `INSERT INTO ${table} (client, n) VALUES ($1, $2)` };
    const own = { name: 'own_rows', text: `SELECT count(*)::int AS c FROM ${table} WHERE client = $1` };
    const settings = { name: 'settings', text: "SELECT current_schema() AS s, current_setting('statement_timeout') AS t, $1::int AS k" };
    let rows = 0;
    for (let i = 0; i < rounds; i++) {
      await client.query('BEGIN');
      await client.query({ ...insert, values: [k, i] });
      const counted = await client.query({ ...own, values: [k] });
      check(counted.rows[0].c === rows + 1, k, `own rows ${counted.rows[0].c} in round ${i}`);
      const seen = await client.query({ ...settings, values: [k] });
      check(seen.rows[0].s === schema && seen.rows[0].t === timeout && seen.rows[0].k === k, k,
        `settings ${JSON.stringify(seen.rows[0])} in round ${i}`);
      if (i % 5 === 4) {
        try {
          await client.query({ name: 'fails', text: 'SELECT 1 / ($1::int - $1::int) AS x', values: [k] });
          check(false, k, `no error from a division by zero in round ${i}`);
        } catch (e) {
          check(e.code === '22012', k, `error ${e.code} instead of 22012 in round ${i}`);
        }
        await client.query('ROLLBACK');
      } else {
        await client.query('COMMIT');
        rows++;
      }
      const sum = await client.query({ name: 'autocommit_sum', text: 'SELECT $1::int + $2::int AS v', values: [k, i] });
      check(sum.rows[0].v === k + i, k, `autocommit read ${sum.rows[0].v} in round ${i}`);
    }
    committed[k] = rows;
  } catch (e) {
    errors.push(`${k}: ${e.message}`);
    console.log(`exception_${k}=${e.code || ''} ${e.message}`);
  } finally {
    await client.end();
  }
}

Promise.all(Array.from({ length: clients }, (_, k) => run(k).catch((e) => {
  errors.push(`${k}: ${e.message}`);
  console.log(`exception_${k}=${e.code || ''} ${e.message}`);
}))).then(() => {
  for (let k = 0; k < clients; k++) {
    console.log(`client_${k}_rows=${committed[k]}`);
  }
  console.log(`errors=${errors.length}`);
});
