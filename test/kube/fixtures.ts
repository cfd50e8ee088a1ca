/**
 * Objects as `kubectl get -o yaml` shows them on a real cluster (server-set
 * fields, status, managedFields and all), for the kinds Weir reads. Each
 * is valid for kubernetes-models' schema (checked by the tests).
 */
export type Json = Record<string, unknown>;

export const REAL_POD: Json = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    annotations: { 'kubectl.kubernetes.io/restartedAt': '2026-10-01T10:00:00Z' },
    creationTimestamp: '2026-10-01T10:00:05Z',
    generateName: 'web-7d9f8b6c5-',
    labels: { app: 'web', 'pod-template-hash': '7d9f8b6c5', tier: 'frontend' },
    name: 'web-7d9f8b6c5-x2k4q',
    namespace: 'shop',
    ownerReferences: [
      {
        apiVersion: 'apps/v1',
        blockOwnerDeletion: true,
        controller: true,
        kind: 'ReplicaSet',
        name: 'web-7d9f8b6c5',
        uid: '0b1f0c1e-8d2a-4f57-9a0e-2b3c4d5e6f70',
      },
    ],
    resourceVersion: '123456',
    uid: '5e0e1f7a-3c2b-4d1e-8f9a-0a1b2c3d4e5f',
    managedFields: [
      {
        apiVersion: 'v1',
        fieldsType: 'FieldsV1',
        fieldsV1: {
          'f:metadata': { 'f:generateName': {}, 'f:labels': { '.': {}, 'f:app': {} } },
          'f:spec': { 'f:containers': { 'k:{"name":"web"}': { '.': {}, 'f:image': {} } } },
        },
        manager: 'kube-controller-manager',
        operation: 'Update',
        time: '2026-10-01T10:00:05Z',
      },
    ],
  },
  spec: {
    affinity: {
      podAntiAffinity: {
        preferredDuringSchedulingIgnoredDuringExecution: [
          {
            podAffinityTerm: {
              labelSelector: { matchLabels: { app: 'web' } },
              topologyKey: 'kubernetes.io/hostname',
            },
            weight: 100,
          },
        ],
      },
    },
    containers: [
      {
        name: 'web',
        image: 'registry.example.com/shop/web:1.4.2',
        imagePullPolicy: 'IfNotPresent',
        args: ['--listen=:8080'],
        env: [
          { name: 'MODE', value: 'production' },
          {
            name: 'POD_IP',
            valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' } },
          },
          {
            name: 'DB_PASSWORD',
            valueFrom: { secretKeyRef: { key: 'password', name: 'db', optional: false } },
          },
        ],
        envFrom: [{ configMapRef: { name: 'web-config' } }],
        ports: [
          { containerPort: 8080, name: 'http', protocol: 'TCP' },
          { containerPort: 9090, name: 'metrics', protocol: 'TCP' },
        ],
        resources: {
          limits: { cpu: '1', memory: '512Mi' },
          requests: { cpu: '100m', memory: '128Mi' },
        },
        livenessProbe: {
          httpGet: { path: '/healthz', port: 'http', scheme: 'HTTP' },
          initialDelaySeconds: 5,
          periodSeconds: 10,
          failureThreshold: 3,
          successThreshold: 1,
          timeoutSeconds: 1,
        },
        readinessProbe: { tcpSocket: { port: 8080 }, periodSeconds: 5 },
        lifecycle: { preStop: { exec: { command: ['sleep', '5'] } } },
        securityContext: {
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'] },
          readOnlyRootFilesystem: true,
          runAsNonRoot: true,
          seccompProfile: { type: 'RuntimeDefault' },
        },
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
        volumeMounts: [
          { mountPath: '/etc/web', name: 'config', readOnly: true },
          {
            mountPath: '/var/run/secrets/kubernetes.io/serviceaccount',
            name: 'kube-api-access-abcde',
            readOnly: true,
          },
        ],
      },
    ],
    initContainers: [
      {
        name: 'migrate',
        image: 'registry.example.com/shop/migrate:1.4.2',
        command: ['/migrate'],
        resources: {},
        terminationMessagePath: '/dev/termination-log',
        terminationMessagePolicy: 'File',
      },
    ],
    dnsPolicy: 'ClusterFirst',
    enableServiceLinks: true,
    nodeName: 'node-a',
    nodeSelector: { 'kubernetes.io/os': 'linux' },
    preemptionPolicy: 'PreemptLowerPriority',
    priority: 0,
    restartPolicy: 'Always',
    schedulerName: 'default-scheduler',
    securityContext: { fsGroup: 2000 },
    serviceAccount: 'web',
    serviceAccountName: 'web',
    terminationGracePeriodSeconds: 30,
    tolerations: [
      {
        effect: 'NoExecute',
        key: 'node.kubernetes.io/not-ready',
        operator: 'Exists',
        tolerationSeconds: 300,
      },
    ],
    topologySpreadConstraints: [
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'ScheduleAnyway',
        labelSelector: { matchExpressions: [{ key: 'app', operator: 'In', values: ['web'] }] },
      },
    ],
    volumes: [
      { name: 'config', configMap: { defaultMode: 420, name: 'web-config' } },
      {
        name: 'kube-api-access-abcde',
        projected: {
          defaultMode: 420,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            {
              configMap: { items: [{ key: 'ca.crt', path: 'ca.crt' }], name: 'kube-root-ca.crt' },
            },
            {
              downwardAPI: {
                items: [
                  {
                    fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.namespace' },
                    path: 'namespace',
                  },
                ],
              },
            },
          ],
        },
      },
      { name: 'scratch', emptyDir: { sizeLimit: '1Gi' } },
    ],
  },
  status: {
    conditions: [
      {
        lastProbeTime: null,
        lastTransitionTime: '2026-10-01T10:00:07Z',
        status: 'True',
        type: 'Ready',
      },
      {
        lastProbeTime: null,
        lastTransitionTime: '2026-10-01T10:00:05Z',
        status: 'True',
        type: 'PodScheduled',
      },
    ],
    containerStatuses: [
      {
        containerID: 'containerd://4f3e2d1c0b',
        image: 'registry.example.com/shop/web:1.4.2',
        imageID: 'registry.example.com/shop/web@sha256:0123456789abcdef',
        lastState: {
          terminated: {
            containerID: 'containerd://0a0b0c',
            exitCode: 137,
            finishedAt: '2026-10-01T09:59:00Z',
            reason: 'OOMKilled',
            startedAt: '2026-10-01T09:00:00Z',
          },
        },
        name: 'web',
        ready: true,
        restartCount: 1,
        started: true,
        state: { running: { startedAt: '2026-10-01T10:00:06Z' } },
      },
    ],
    hostIP: '192.168.10.11',
    hostIPs: [{ ip: '192.168.10.11' }],
    phase: 'Running',
    podIP: '10.244.1.10',
    podIPs: [{ ip: '10.244.1.10' }, { ip: 'fd00:10:244:1::a' }],
    qosClass: 'Burstable',
    startTime: '2026-10-01T10:00:05Z',
  },
};

export const REAL_NODE: Json = {
  apiVersion: 'v1',
  kind: 'Node',
  metadata: {
    annotations: { 'node.alpha.kubernetes.io/ttl': '0' },
    creationTimestamp: '2026-09-01T08:00:00Z',
    labels: {
      'kubernetes.io/arch': 'amd64',
      'kubernetes.io/hostname': 'node-a',
      'kubernetes.io/os': 'linux',
      'topology.kubernetes.io/zone': 'zone-1',
    },
    name: 'node-a',
    resourceVersion: '98765',
    uid: '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d',
  },
  spec: {
    podCIDR: '10.244.1.0/24',
    podCIDRs: ['10.244.1.0/24', 'fd00:10:244:1::/64'],
    providerID: 'kvm://node-a',
    taints: [{ effect: 'NoSchedule', key: 'dedicated', value: 'shop' }],
  },
  status: {
    addresses: [
      { address: '192.168.10.11', type: 'InternalIP' },
      { address: 'fd00:192:168:10::11', type: 'InternalIP' },
      { address: 'node-a', type: 'Hostname' },
    ],
    allocatable: { cpu: '3800m', 'ephemeral-storage': '95Gi', memory: '15Gi', pods: '110' },
    capacity: { cpu: '4', 'ephemeral-storage': '100Gi', memory: '16Gi', pods: '110' },
    conditions: [
      {
        lastHeartbeatTime: '2026-10-01T10:00:00Z',
        lastTransitionTime: '2026-09-01T08:01:00Z',
        message: 'kubelet is posting ready status',
        reason: 'KubeletReady',
        status: 'True',
        type: 'Ready',
      },
    ],
    daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
    images: [
      {
        names: ['registry.example.com/shop/web@sha256:0123', 'registry.example.com/shop/web:1.4.2'],
        sizeBytes: 52428800,
      },
    ],
    nodeInfo: {
      architecture: 'amd64',
      bootID: '1b2c3d4e',
      containerRuntimeVersion: 'containerd://1.7.20',
      kernelVersion: '6.1.0-25-amd64',
      kubeProxyVersion: '',
      kubeletVersion: 'v1.33.1',
      machineID: 'abc123',
      operatingSystem: 'linux',
      osImage: 'Debian GNU/Linux 12 (bookworm)',
      systemUUID: 'def456',
    },
  },
};

export const REAL_NETWORK_POLICY: Json = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: {
    annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
    creationTimestamp: '2026-10-01T10:00:00Z',
    generation: 3,
    name: 'web',
    namespace: 'shop',
    resourceVersion: '4242',
    uid: '9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
  },
  spec: {
    podSelector: {
      matchLabels: { app: 'web' },
      matchExpressions: [{ key: 'tier', operator: 'NotIn', values: ['canary'] }],
    },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [
      {
        from: [
          { podSelector: { matchLabels: { app: 'lb' } } },
          { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress' } } },
          { ipBlock: { cidr: '10.0.0.0/8', except: ['10.1.0.0/16'] } },
        ],
        ports: [
          { port: 'http', protocol: 'TCP' },
          { port: 30000, endPort: 32767, protocol: 'TCP' },
        ],
      },
    ],
    egress: [
      {
        to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: 'db' } } }],
        ports: [{ port: 5432 }],
      },
    ],
  },
};

export const REAL_NAMESPACE: Json = {
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: {
    creationTimestamp: '2026-09-01T08:00:00Z',
    labels: { 'kubernetes.io/metadata.name': 'shop', team: 'shop' },
    name: 'shop',
    resourceVersion: '12',
    uid: '1a2b3c4d-5e6f-4a1b-8c9d-0e1f2a3b4c5d',
  },
  spec: { finalizers: ['kubernetes'] },
  status: { phase: 'Active' },
};
