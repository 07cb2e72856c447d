// `podwire lab ...`: the embedded lab node from the command line.
import type { Command } from 'commander';
import { manifestDir } from '../deploy/manifests.js';
import {
  criLogContent,
  daemonSetDown,
  daemonSetFromManifest,
  daemonSetLogs,
  daemonSetUp,
  ensureLabImage,
  withEnv,
} from '../lab/daemonset.js';
import { labDown, labRestart, labStatus, labUp } from '../lab/lab.js';
import { labPaths } from '../lab/paths.js';
import { type CreatedPod, createPods, deletePods, percentile } from '../lab/pods.js';
import { collect, ms, positiveInteger, printJson, progress, requireRoot, table } from './output.js';

function printPodLine(pod: CreatedPod): void {
  const id = pod.sandboxId ? pod.sandboxId.slice(0, 13) : '-';
  const outcome = pod.error ? `FAILED: ${pod.error}` : (pod.ip ?? 'no IP');
  progress(`${pod.namespace}/${pod.name}  ${id}  ${ms(pod.runPodSandboxMs)}  ${outcome}`);
}

export function registerLab(program: Command): void {
  const lab = program
    .command('lab')
    .description(
      'the embedded lab node: a private containerd with CNI, driven over CRI like a kubelet',
    );

  lab
    .command('up')
    .description('start the lab: private containerd, CNI network, pause image')
    .option(
      '--cni-config <file>',
      'a CNI network list (.conflist) of the reference plugins to use instead of the default bridge',
    )
    .option('--containerd <path>', 'another containerd binary (e.g. a 2.x build)')
    .option('--subnet <cidr>', 'pod subnet of the default network (default 10.244.77.0/24)')
    .action(async (options: { cniConfig?: string; containerd?: string; subnet?: string }) => {
      requireRoot('podwire lab up');
      await labUp(labPaths(), options, progress);
    });

  lab
    .command('restart')
    .description(
      "start the lab's containerd again (after it was killed, or with another build); the pods stay",
    )
    .option('--containerd <path>', 'run this containerd binary from now on')
    .action(async (options: { containerd?: string }) => {
      requireRoot('podwire lab restart');
      await labRestart(labPaths(), options.containerd, progress);
    });

  lab
    .command('down')
    .description('remove every pod, stop the lab by pid, remove all it made (also after a crash)')
    .action(async () => {
      requireRoot('podwire lab down');
      await labDown(labPaths(), progress);
    });

  lab
    .command('status')
    .description('whether the lab runs, its CRI endpoint, CNI dirs and pods')
    .option('--json', 'one JSON document (its shape: docs/records.md)')
    .action(async (options: { json?: boolean }) => {
      const status = await labStatus(labPaths());
      if (options.json) return printJson(status);
      if (!status.running) {
        process.stdout.write('lab: not running (start it with podwire lab up)\n');
        return;
      }
      process.stdout.write(
        `lab: running, containerd ${status.containerdVersion} pid ${status.pid}, CRI ${status.criEndpoint}\n` +
          `cni: ${status.network} from ${status.cniConfigSource}, conf ${status.cniConfDir}, bin ${status.cniBinDir}\n` +
          `${status.pods.length} pods\n`,
      );
      if (status.pods.length > 0) {
        const rows = status.pods.map((pod) => [
          pod.id.slice(0, 13),
          `${pod.namespace}/${pod.name}`,
          pod.state.replace('SANDBOX_', ''),
          pod.ip ?? '-',
          pod.netns ?? '-',
        ]);
        process.stdout.write(`${table(['SANDBOX', 'POD', 'STATE', 'IP', 'NETNS'], rows)}\n`);
      }
    });

  const pods = lab
    .command('pods')
    .description('act as the kubelet: create and delete pod sandboxes');

  pods
    .command('create')
    .description(
      'RunPodSandbox with full pod metadata, P at a time; prints id, IP and latency per pod',
    )
    .option('--count <n>', 'how many pods', positiveInteger('--count'), 1)
    .option(
      '--parallel <p>',
      'how many RunPodSandbox calls at once',
      positiveInteger('--parallel'),
      1,
    )
    .option('--namespace <ns>', "the pods' namespace", 'default')
    .option('--prefix <name>', 'pod name prefix (a random suffix follows)', 'lab')
    .option('--with-container', 'also create and start an application container in each pod')
    .option('--json', 'one JSON document with every pod and the latency summary')
    .action(
      async (options: {
        count: number;
        parallel: number;
        namespace: string;
        prefix: string;
        withContainer?: boolean;
        json?: boolean;
      }) => {
        requireRoot('podwire lab pods create');
        const created = await createPods(
          labPaths(),
          { ...options, withContainer: options.withContainer ?? false },
          options.json ? () => undefined : printPodLine,
        );
        const latencies = created.filter((pod) => !pod.error).map((pod) => pod.runPodSandboxMs);
        const summary = {
          created: latencies.length,
          failed: created.length - latencies.length,
          runPodSandboxMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95) },
        };
        if (options.json) printJson({ pods: created, ...summary });
        else {
          progress(
            `${summary.created} created, ${summary.failed} failed; RunPodSandbox p50 ${ms(summary.runPodSandboxMs.p50)}, p95 ${ms(summary.runPodSandboxMs.p95)}`,
          );
        }
        if (summary.failed > 0) process.exitCode = 1;
      },
    );

  pods
    .command('delete')
    .description('StopPodSandbox then RemovePodSandbox')
    .argument('[ids...]', 'sandbox ids (or unique prefixes)')
    .option('--all', 'every pod of the lab')
    .action(async (ids: string[], options: { all?: boolean }) => {
      requireRoot('podwire lab pods delete');
      if (!options.all && ids.length === 0)
        throw new Error('name the sandbox ids to delete, or pass --all');
      if (options.all && ids.length > 0)
        throw new Error('pass either sandbox ids or --all, not both');
      const deleted = await deletePods(labPaths(), options.all ? 'all' : ids, (pod) =>
        progress(
          `${pod.sandboxId.slice(0, 13)}  ${pod.error ? `FAILED: ${pod.error}` : 'deleted'}`,
        ),
      );
      if (deleted.some((pod) => pod.error)) process.exitCode = 1;
    });

  const daemonSet = lab
    .command('daemonset')
    .description(
      "podwire's own DaemonSet (deploy/kubernetes) on the lab, run through CRI as a kubelet runs it",
    );

  daemonSet
    .command('up')
    .description(
      "build podwire's image if the lab lacks it, and run the DaemonSet's pod from the manifest",
    )
    .option('--privileged', 'the privileged overlay (deploy/kubernetes/overlays/privileged)')
    .option(
      '--manifests <dir>',
      'another kustomization directory to run the DaemonSet from (e.g. an edited copy of deploy/kubernetes)',
    )
    .option('--build', 'build and import the image again (after a change to podwire)')
    .option(
      '--env <name=value>',
      "set a variable in the pod's container, as kubectl set env does (e.g. OTEL_EXPORTER_OTLP_ENDPOINT); repeatable",
      collect,
    )
    .action(
      async (options: {
        privileged?: boolean;
        manifests?: string;
        build?: boolean;
        env?: string[];
      }) => {
        requireRoot('podwire lab daemonset up');
        if (options.privileged && options.manifests)
          throw new Error('lab daemonset up: give --privileged or --manifests, not both');
        const paths = labPaths();
        const spec = withEnv(
          daemonSetFromManifest(
            options.manifests ?? manifestDir(options.privileged ? 'privileged' : 'base'),
          ),
          options.env ?? [],
        );
        const sandboxId = await daemonSetUp(
          paths,
          spec,
          (image) => ensureLabImage(paths, image, options.build === true, progress),
          progress,
        );
        progress(
          `${spec.namespace}/${spec.name} runs (${sandboxId.slice(0, 13)}): podwire lab daemonset logs shows its records`,
        );
      },
    );

  daemonSet
    .command('logs')
    .description(
      'what the DaemonSet pod wrote: its stdout (the NDJSON records) here, its stderr on stderr',
    )
    .action(async () => {
      requireRoot('podwire lab daemonset logs');
      for (const { text } of await daemonSetLogs(labPaths())) {
        for (const { stream, line } of criLogContent(text))
          (stream === 'stdout' ? process.stdout : process.stderr).write(`${line}\n`);
      }
    });

  daemonSet
    .command('down')
    .description(
      "stop the DaemonSet's pod with its grace period, as the kubelet does, and remove it",
    )
    .action(async () => {
      requireRoot('podwire lab daemonset down');
      const spec = daemonSetFromManifest(manifestDir());
      await daemonSetDown(labPaths(), spec.graceSeconds, progress);
    });
}
