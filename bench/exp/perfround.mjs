// Experiment: where the CPU goes while pods start, with and without the tracer. Root, perf (linux-perf), a build.
// N times (2): `perf record -a -F 2000 -g` over the creation of 10 pods without the tracer, then with a freshly
// started `podwire trace`, into /tmp/perf-none-I.data and /tmp/perf-with-I.data. Read them with e.g.
//   perf report -i /tmp/perf-with-0.data --no-children -g none -n --sort comm --stdio

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../dist', import.meta.url));
const { labUp, labDown } = await import(`${root}/src/lab/lab.js`);
const { labPaths } = await import(`${root}/src/lab/paths.js`);
const { createPods, deletePods, percentile } = await import(`${root}/src/lab/pods.js`);
const quiet = () => undefined;
const paths = labPaths();
const started = (await labUp(paths, {}, quiet)) === 'started';
async function perfRound(out) {
  const perf = spawn('perf', ['record', '-a', '-F', '2000', '-g', '-o', out], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000));
  const made = await createPods(
    paths,
    { count: 10, parallel: 1, namespace: 'bench', prefix: 'bench', withContainer: false },
    quiet,
  );
  await new Promise((r) => {
    perf.once('exit', r);
    perf.kill('SIGINT');
  });
  await deletePods(paths, 'all', quiet);
  return percentile(
    made.map((p) => p.runPodSandboxMs),
    50,
  );
}
try {
  await createPods(
    paths,
    { count: 3, parallel: 1, namespace: 'bench', prefix: 'bench', withContainer: false },
    quiet,
  );
  await deletePods(paths, 'all', quiet);
  for (let i = 0; i < Number(process.env.N ?? 2); i++) {
    const a = await perfRound(`/tmp/perf-none-${i}.data`);
    const child = spawn(process.execPath, [`${root}/src/cli.js`, 'trace'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    await new Promise((res) =>
      createInterface({ input: child.stdout }).on('line', (l) => {
        if (l.includes('"state":"ready"')) res();
      }),
    );
    const b = await perfRound(`/tmp/perf-with-${i}.data`);
    await new Promise((r) => {
      child.once('exit', r);
      child.kill('SIGINT');
    });
    console.log(`round ${i}: none ${a.toFixed(1)} with ${b.toFixed(1)}`);
  }
} finally {
  if (started) await labDown(paths, quiet);
}
