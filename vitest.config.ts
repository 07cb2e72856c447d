// Two projects: `unit` runs anywhere (and on Node 20 and 22); `lab` drives the real containerd + CNI stack as root.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.lab.test.ts'],
        },
      },
      {
        test: {
          name: 'lab',
          include: ['test/**/*.lab.test.ts'],
          // One lab per machine: lab tests share containerd, the bridge and /var/run/netns.
          fileParallelism: false,
          testTimeout: 180_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
