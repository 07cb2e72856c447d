// Experiment, not a bench with a target: RunPodSandbox on the lab with several tracer variants in one run.
// Interleaved, the order reversed every round. Root; build first (npm run build). Each round creates 10 pods one at a
// time and deletes them, once per variant, starting and stopping that variant's tracer around it; prints each
// round's medians with the tracer's CPU (from /proc: node / bpftrace / cat) and, at the end, ratios to the first.
// VARIANTS (JSON), each name -> null (no tracer) or {cli, args, env}: `node CLI trace ARGS`;
//   wrap: [cmd, ...] runs it under cmd (e.g. ["chrt", "-i", "0"]); warm: true runs an unmeasured round first;
//   duty: [stopMs, runMs] SIGSTOPs/SIGCONTs the tracer's bpftrace; {bt: FILE} runs bpftrace FILE alone instead.
// ROUNDS (8), PODS (10), LABDIST (this checkout's dist: the lab code). To compare with an older commit, build it in
// a clone of its own and give its dist/src/cli.js as a variant's cli. Example (bench/README.md):
//   VARIANTS='{"none":null,"new":{"cli":"dist/src/cli.js"}}' ROUNDS=8 node bench/exp/rps.mjs

import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = process.env.LABDIST ?? fileURLToPath(new URL('../../dist', import.meta.url));
const { labDown, labUp } = await import(`${root}/src/lab/lab.js`);
const { labPaths } = await import(`${root}/src/lab/paths.js`);
const { createPods, deletePods, percentile } = await import(`${root}/src/lab/pods.js`);
const rounds = Number(process.env.ROUNDS ?? 8);
const pods = Number(process.env.PODS ?? 10);
const variants = JSON.parse(process.env.VARIANTS);
const names = Object.keys(variants);
const quiet = () => undefined;
const HZ = 100;
function cpuOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / HZ;
  } catch {
    return 0;
  }
}
function tree(pid) {
  const out = [pid];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const s = readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(...tree(Number(e)));
    } catch {}
  }
  return out;
}
function startBt(v) {
  // bpftrace alone, output to a regular file (nobody woken per line); ready when the BEGIN line is there.
  return new Promise((resolve, reject) => {
    const out = `/tmp/rps-bt-${process.pid}.out`;
    const fd = openSync(out, 'w');
    const child = spawn(
      v.wrap ? v.wrap[0] : 'bpftrace',
      [...(v.wrap ? [...v.wrap.slice(1), 'bpftrace'] : []), '--unsafe', '-f', 'json', v.bt],
      { stdio: ['ignore', fd, 'ignore'], env: { ...process.env, BPFTRACE_STRLEN: '200' } },
    );
    closeSync(fd);
    const timer = setInterval(() => {
      if (readFileSync(out, 'utf8').includes('podwire_ready')) {
        clearInterval(timer);
        resolve({
          child,
          get recs() {
            return readFileSync(out, 'utf8').split('\n').length;
          },
        });
      }
    }, 100);
    child.once('exit', (c) => {
      clearInterval(timer);
      reject(new Error(`bpftrace exit ${c}`));
    });
  });
}
function start(v) {
  if (v.bt) return startBt(v);
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = v.wrap ? [...v.wrap, process.execPath] : [process.execPath];
    const child = spawn(cmd, [...pre, v.cli, 'trace', ...(v.args ?? [])], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...(v.env ?? {}) },
    });
    let recs = 0;
    let ready = false;
    createInterface({ input: child.stdout }).on('line', (l) => {
      if (l.includes('"kind":"handshake"') || l.includes('"kind":"teardown"')) recs++;
      if (!ready && l.includes('"state":"ready"')) {
        ready = true;
        resolve({
          child,
          get recs() {
            return recs;
          },
        });
      }
    });
    child.once('exit', (c) => {
      if (!ready) reject(new Error(`exit ${c}`));
    });
  });
}
function stop(t) {
  return new Promise((r) => {
    t.child.removeAllListeners('exit');
    t.child.once('exit', r);
    t.child.kill('SIGINT');
  });
}
async function round(paths) {
  const made = await createPods(
    paths,
    { count: pods, parallel: 1, namespace: 'bench', prefix: 'bench', withContainer: false },
    quiet,
  );
  if (made.some((p) => p.error)) throw new Error(made.find((p) => p.error).error);
  await deletePods(paths, 'all', quiet);
  return made.map((p) => p.runPodSandboxMs);
}
const paths = labPaths();
const started = (await labUp(paths, {}, quiet)) === 'started';
const all = Object.fromEntries(names.map((n) => [n, []]));
const per = Object.fromEntries(names.map((n) => [n, []]));
const cpu = Object.fromEntries(names.map((n) => [n, []]));
try {
  await round(paths);
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? names : [...names].reverse();
    const line = [];
    for (const n of order) {
      const v = variants[n];
      let t = null;
      if (v) {
        t = await start(v);
        if (v.warm) await round(paths);
      }
      let duty = null;
      if (v?.duty) {
        const bt = tree(t.child.pid).find((p) => {
          try {
            return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'bpftrace';
          } catch {
            return false;
          }
        });
        let stopped = false;
        const step = () => {
          try {
            process.kill(bt, stopped ? 'SIGCONT' : 'SIGSTOP');
            stopped = !stopped;
          } catch {}
          duty = setTimeout(step, stopped ? v.duty[0] : v.duty[1]);
        };
        step();
        t.undo = () => {
          clearTimeout(duty);
          try {
            process.kill(bt, 'SIGCONT');
          } catch {}
        };
      }
      const pids = t ? tree(t.child.pid) : [];
      const before = pids.reduce((a, p) => a + cpuOf(p), 0);
      const before1 = pids.map((p) => cpuOf(p));
      const ms = await round(paths);
      if (t) await new Promise((r) => setTimeout(r, 1500));
      const used = pids.reduce((a, p) => a + cpuOf(p), 0) - before;
      const split = pids.map((p, i) => (cpuOf(p) - before1[i]).toFixed(0)).join('/');
      if (t) {
        cpu[n].push(used);
        t.undo?.();
        await stop(t);
      }
      all[n].push(...ms);
      per[n].push(percentile(ms, 50));
      line.push(
        `${n}=${percentile(ms, 50).toFixed(1)}${t ? `(cpu ${used.toFixed(0)}=${split} recs ${t.recs})` : ''}`,
      );
    }
    console.log(`round ${r + 1}: ${line.join('  ')}`);
  }
  const base = names[0];
  for (const n of names) {
    const med = percentile(all[n], 50);
    const ratios = per[n].map((x, i) => x / per[base][i]);
    console.log(
      `${n}: median ${med.toFixed(1)} ms, ratio of medians ${(med / percentile(all[base], 50)).toFixed(3)}, median pair ratio ${percentile(ratios, 50).toFixed(3)}, cpu/round median ${cpu[n].length ? percentile(cpu[n], 50) : 0} ms`,
    );
  }
} finally {
  if (started) await labDown(paths, quiet);
}
