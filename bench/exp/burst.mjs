// Experiment: a burst of pods with `podwire trace` running — PODS (50) created PAR (10) at a time, then deleted.
// Root and a build. Prints how many were created, the records by kind and outcome (and ok handshakes without
// their veth create step), and every status line but the start's and the stop's (lost events would show here).

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../dist', import.meta.url));
const { labUp, labDown } = await import(`${root}/src/lab/lab.js`);
const { labPaths } = await import(`${root}/src/lab/paths.js`);
const { createPods, deletePods } = await import(`${root}/src/lab/pods.js`);
const q = () => undefined;
const paths = labPaths();
const started = (await labUp(paths, {}, q)) === 'started';
try {
  const child = spawn(process.execPath, [`${root}/src/cli.js`, 'trace'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const counts = {};
  const statuses = [];
  await new Promise((res) =>
    createInterface({ input: child.stdout }).on('line', (l) => {
      const o = JSON.parse(l);
      if (o.kind === 'status') {
        if (o.state === 'ready') res();
        else statuses.push(`${o.state}: ${o.message ?? ''}`.slice(0, 160));
      } else {
        const k = `${o.kind}:${o.outcome}`;
        counts[k] = (counts[k] ?? 0) + 1;
        if (
          o.outcome === 'ok' &&
          o.kind === 'handshake' &&
          !(o.phases ?? []).some((p) => p.name === 'veth create')
        )
          counts['ok-missing-veth'] = (counts['ok-missing-veth'] ?? 0) + 1;
      }
    }),
  );
  const t0 = Date.now();
  const made = await createPods(
    paths,
    {
      count: Number(process.env.PODS ?? 50),
      parallel: Number(process.env.PAR ?? 10),
      namespace: 'burst',
      prefix: 'burst',
      withContainer: false,
    },
    q,
  );
  console.log(`created ${made.filter((p) => !p.error).length} in ${Date.now() - t0} ms`);
  await deletePods(paths, 'all', q);
  await new Promise((r) => setTimeout(r, 3000));
  await new Promise((r) => {
    child.once('exit', r);
    child.kill('SIGINT');
  });
  console.log(JSON.stringify(counts));
  console.log(
    statuses.filter((s) => !/^(runtime-found|plugin-probes|probe-up)/.test(s)).join('\n'),
  );
} finally {
  if (started) await labDown(paths, q);
}
