// CNI environments and plugin answers, as the runtime and plugins really write them.
import { describe, expect, it } from 'vitest';
import { cniEnvironment, cniErrorMessage, cniOutput } from '../../src/decode/cni.js';

describe('CNI environment', () => {
  it('reads the pod identity from CNI_ARGS in any order, and a TRACEPARENT when given', () => {
    const env = cniEnvironment({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'a'.repeat(64),
      CNI_NETNS: '/var/run/netns/cni-1',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K8S_POD_UID=u-1;IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1',
      TRACEPARENT: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
    });
    expect(env).toMatchObject({
      command: 'ADD',
      containerId: 'a'.repeat(64),
      netns: '/var/run/netns/cni-1',
      ifname: 'eth0',
    });
    expect(env.args).toEqual({
      K8S_POD_UID: 'u-1',
      IgnoreUnknown: '1',
      K8S_POD_NAMESPACE: 'default',
      K8S_POD_NAME: 'web-1',
    });
    expect(env.traceparent).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('treats an empty CNI_NETNS (the second DEL after the namespace is gone) as absent', () => {
    expect(cniEnvironment({ CNI_NETNS: '' }).netns).toBeNull();
  });
});

describe('plugin output', () => {
  it('reads a bridge result: interfaces, address and routes', () => {
    const output = cniOutput(
      '{"cniVersion":"1.0.0","interfaces":[{"name":"pwlab0","mac":"ca:51:7a:2b:61:1f"},{"name":"eth0","mac":"0a:b7:52:83:b5:88","sandbox":"/var/run/netns/cni-1"}],"ips":[{"interface":1,"address":"10.244.77.6/24","gateway":"10.244.77.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}',
    );
    expect(output.type).toBe('result');
    if (output.type !== 'result') return;
    expect(output.result.interfaces.map((i) => i.name)).toEqual(['pwlab0', 'eth0']);
    expect(output.result.ips).toEqual([
      { address: '10.244.77.6/24', gateway: '10.244.77.1', interface: 1 },
    ]);
  });

  it('reads an error with its details as one line', () => {
    const output = cniOutput(
      '{"code":999,"msg":"failed to allocate for range 0","details":"no IP addresses available"}\n',
    );
    expect(output).toEqual({
      type: 'error',
      error: {
        code: 999,
        msg: 'failed to allocate for range 0',
        details: 'no IP addresses available',
      },
    });
    if (output.type === 'error')
      expect(cniErrorMessage(output.error)).toBe(
        'failed to allocate for range 0: no IP addresses available',
      );
  });

  it('says why output cut by the probe cannot be read, without throwing', () => {
    expect(cniOutput('{"cniVersion":"1.0.0","interfaces":[{"na')).toMatchObject({
      type: 'unreadable',
    });
    expect(cniOutput('')).toMatchObject({ type: 'unreadable', why: 'no output' });
    expect(cniOutput('[1,2]')).toMatchObject({ type: 'unreadable', why: 'not a JSON object' });
  });
});
