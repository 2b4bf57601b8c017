"""fleetprof's device side: the code that runs on a device (session runner, facts, stop),
stdlib only, Python 3.8+; shipped as one zipapp, imported by thin Ansible modules.

The controller imports ``fleetprof_device.contract`` (schemas, file names, limits) and
``fleetprof_device.pyspy_output`` too: what both sides must agree on is written once.
By hand on a device: ``python3 fleetprof_device.pyz {session|facts|stop} ARGS_FILE``
(docs/device.md).
"""
