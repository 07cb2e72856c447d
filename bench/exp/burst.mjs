// Experiment: a burst of pods with `podwire trace` running — PODS (50) created PAR (10) at a time, then deleted.
// Root and a build. Prints how many were created, the records by kind and outcome (and ok handshakes without one
// of the lab's bridge steps), how long after its RunPodSandbox returned each handshake record came (median, max),
// and every status line but the start's and the stop's (lost or late events would show here).
// PLUGIN_PROBES=syscalls traces the plugins at the syscalls; RECORD=FILE keeps the tracer's recording.

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
  const probes = process.env.PLUGIN_PROBES ? ['--plugin-probes', process.env.PLUGIN_PROBES] : [];
  if (process.env.RECORD) probes.push('--record', process.env.RECORD);
  const child = spawn(process.execPath, [`${root}/src/cli.js`, 'trace', ...probes], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const counts = {};
  const statuses = [];
  const latencies = [];
  const steps = [
    'netns create',
    'cni ADD loopback',
    'cni ADD bridge',
    'ipam host-local',
    'veth create',
  ];
  await new Promise((res, rej) => {
    // A tracer that ends before it is ready (a bad option) ends the experiment, and the lab goes down.
    child.once('exit', (code) =>
      rej(new Error(`podwire trace exited (${code}) before it was ready`)),
    );
    createInterface({ input: child.stdout }).on('line', (l) => {
      const o = JSON.parse(l);
      if (o.kind === 'status') {
        if (o.state === 'ready') res();
        else statuses.push(`${o.state}: ${o.message ?? ''}`.slice(0, 160));
      } else {
        const k = `${o.kind}:${o.outcome}`;
        counts[k] = (counts[k] ?? 0) + 1;
        const names = new Set((o.phases ?? []).map((p) => p.name));
        if (o.outcome === 'ok' && o.kind === 'handshake' && !steps.every((step) => names.has(step)))
          counts['ok-missing-steps'] = (counts['ok-missing-steps'] ?? 0) + 1;
        const run = (o.phases ?? []).find((p) => p.name === 'cri RunPodSandbox');
        if (o.kind === 'handshake' && run?.end) latencies.push(Date.now() - Date.parse(run.end));
      }
    });
  });
  child.removeAllListeners('exit');
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
  latencies.sort((a, b) => a - b);
  console.log(
    `record after RunPodSandbox returned: median ${latencies[Math.floor(latencies.length / 2)]} ms, max ${latencies.at(-1)} ms`,
  );
  console.log(
    statuses.filter((s) => !/^(runtime-found|plugin-probes|probe-up)/.test(s)).join('\n'),
  );
} finally {
  if (started) await labDown(paths, q);
}
