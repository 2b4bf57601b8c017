"""Where fleetprof's own files are: the checkout (or installed tree) and what it ships
beside the package (playbooks, roles, ansible.cfg, campaigns, the default inventory).

One home for these paths: the Ansible wrapper, the scheduler, the inventory loader, the
collection builder and the command line all import them from here.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
ROLES_DIR = REPO_ROOT / "roles"
ANSIBLE_CFG = REPO_ROOT / "ansible.cfg"
# fleetprof's own Ansible callback plugins (the watchdog), shipped inside the package.
WATCHDOG_DIR = PACKAGE_DIR / "ansible_plugins" / "callback"
