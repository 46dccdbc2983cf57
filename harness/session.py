"""One `kvmconf run`: kernel, payloads, image, keys and the (lazily booted) guest, or
the live host (--target local or ssh) that stands in its place."""
from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness import tmpdirs
from harness.errors import HarnessError
from harness.guest import Guest
from harness.guestimage import build_base, with_keys
from harness.kernel import pvh, source
from harness.machine import Machine
from harness.machine.profiles import Profile
from harness.payloads import build as payload_build
from harness.remote.keys import generate
from harness.targets import TargetSpec
from harness.targets.host import HarnessSide
from harness.targets.live import LiveHost


@dataclass
class RunOptions:
    output: Path
    profiles: dict[str, str]       # model profile per feature (--profile FEATURE=NAME)
    seed: int
    accel: str                     # resolved: tcg | kvm
    accel_reason: str
    machine_profile: Profile
    boot_timeout: float = 120.0
    append: list[str] = field(default_factory=list)   # extra kernel command line
    reproduce: str = "kvmconf run"
    payload_names: list[str] = field(default_factory=list)
    target: TargetSpec = TargetSpec("qemu")
    user_space_only: bool = False  # --user-space-only: the rows' guest_cases are left out
    retries: int = 1               # --retries: re-runs of a case that ERRORed, each in a fresh machine


class RunContext:
    def __init__(self, options: RunOptions, kernel, record, progress=None, live: LiveHost | None = None):
        """`kernel`: a KernelImage (QEMU target) or the live host's RunningKernel; `live`:
        the opened live host of a local or ssh target (closed by close())."""
        self.options, self.kernel, self.record = options, kernel, record
        self.progress = progress
        self.workdir = tmpdirs.make("kvmconf-run-")  # 0700: sockets, keys; reclaimed if we are killed
        self.live = live
        self._lost = ""        # why the live host runs no more cases
        self.lost_reason = ""  # how the last discarded guest was found
        self._guest: Guest | None = None
        self._boot_error: HarnessError | None = None
        self._harness_sides: dict[str, HarnessSide] = {}
        self._harness_errors: dict[str, HarnessError] = {}
        self.payload_errors: dict[str, str] = {}
        self._boots = 0   # machines booted so far; the logs of boot n are <profile>-<n>.*
        self._extra: dict[str, Guest] = {}   # machines a feature boots itself (boot_extra)

    def _prepare_image(self) -> Path:
        """Payloads, image and keys, made once per run (a replacement guest reuses them)."""
        initrd = self.workdir / "initrd.cpio"
        if initrd.exists():
            return initrd
        payloads, self.payload_errors = payload_build.build_all(self.options.payload_names)
        image = build_base(self.kernel, payloads, self.options.machine_profile.module_groups)
        keys = generate(self.workdir)
        self._keys = keys
        return with_keys(image, keys.client_public, keys.host_key_file, initrd)

    def guest(self) -> Guest:
        """The booted guest (or the live host); a failed boot is raised again for every
        case that needs it."""
        if self.live is not None:
            if self._lost:
                raise HarnessError(self._lost)
            return self.live
        if self._guest is not None:
            return self._guest
        if self._boot_error is not None:
            raise HarnessError(f"machine {self.options.machine_profile.name} failed to boot: "
                               f"{str(self._boot_error).splitlines()[0]}")
        if self.progress:
            self.progress(f"booting machine {self.options.machine_profile.name} "
                          f"(accel {self.options.accel}, kernel {self.kernel.version})")
        try:
            initrd = self._prepare_image()
            self._boots += 1
            name = self.options.machine_profile.name + (f"-{self._boots}" if self._boots > 1 else "")
            machine = Machine(name, self.options.machine_profile,
                              pvh.boot_file(self.kernel), initrd, self.workdir, self.options.output,
                              accel=self.options.accel, extra_append=self.options.append)
            self._guest = Guest.boot(machine, self._keys, self.payload_errors,
                                     self.options.boot_timeout)
        except HarnessError as e:
            self._boot_error = e
            raise
        except Exception as e:  # a harness bug: the cases ERROR, they do not FAIL
            self._boot_error = HarnessError(f"harness error while booting: {type(e).__name__}: {e}")
            raise self._boot_error from e
        self.record.data["timing"]["boot_to_ready_s"] = round(self._guest.boot_to_ready_s, 3)
        self.record.data["platform"]["capabilities"]["guest"] = self._guest.capabilities
        self.record.write()
        return self._guest

    def payload_host(self, row):
        """Where a feature's payload runs: the target, or this machine for a row whose
        payload is built from the kernel's source (raises source.NoSource when none is known)."""
        if row.runs_on != "harness":
            return self.guest()
        if row.name in self._harness_errors:
            raise self._harness_errors[row.name]
        if row.name not in self._harness_sides:
            tree = source.tree_of(self.kernel, self.workdir)
            try:
                built = row.build_payload(tree)
            except Exception as e:  # a failed build (or a bug in the builder): that feature ERRORs
                error = e if isinstance(e, HarnessError) else HarnessError(
                    f"{row.name}: building its payload crashed: {type(e).__name__}: {e}")
                self._harness_errors[row.name] = error
                raise error from None
            folder = self.workdir / "harness-payloads"
            folder.mkdir(exist_ok=True)
            (folder / row.name).symlink_to(built.path)
            self.record.data.setdefault("compiled_kernel_files", {}).setdefault(row.name, {}).update(built.kernel_files)
            self.record.write()
            self._harness_sides[row.name] = HarnessSide(str(folder), self.options.output)
        return self._harness_sides[row.name]

    @property
    def booted(self):
        return self.live if self.live is not None and not self._lost else self._guest

    def discard_dead_guest(self, case_id: str) -> Path:
        """Keep the evidence of a guest that stopped answering, kill it, and let the
        next case boot a fresh one: a hang costs one case, not the rest of the run.
        A live host cannot be replaced: the cases after it ERROR with the reason."""
        if self.live is not None:
            why = self.live.poisoned or "the connection was lost"
            path = self.options.output / f"{self.live.kind}.lost-after-{case_id.replace('/', '_')}.txt"
            path.write_text(f"target {self.live.where}: {why} after case {case_id}\n")
            self._lost = (f"target {self.live.where} runs no more cases: {why} after case {case_id} "
                          f"(a live host cannot be replaced; evidence: {path.name})")
            self.lost_reason = f"target lost: {why}"
            return path
        guest, self._guest = self._guest, None
        machine = guest.machine
        if machine.running:
            state = machine.process_state()
            evidence = machine.hang_evidence()
            self.lost_reason = f"guest lost: QEMU {'stopped' if state.startswith('T') else 'running'} (state {state[0]})"
        else:
            evidence = f"QEMU exited ({machine.exit_description()})\nserial tail:\n{machine.serial_tail(40)}"
            self.lost_reason = f"guest lost: QEMU exited ({machine.exit_description().split(';')[0]})"
        path = self.options.output / f"{machine.name}.lost-after-{case_id.replace('/', '_')}.txt"
        path.write_text(evidence + "\n")
        machine.kill()
        guest.remote.close()
        return path

    def replace_guest(self, case_id: str) -> str:
        """Before a retry: end the run's machine (kept logs stay), so the next guest()
        boots a fresh one; what was ended ("" when nothing: a live host, no machine
        yet, or a boot that failed, which stays failed)."""
        if self.live is not None or self._guest is None:
            return ""
        guest, self._guest = self._guest, None
        guest.remote.close()
        guest.machine.kill()
        return f"{guest.machine.name} ended after {case_id}"

    def boot_extra(self, name: str, make_machine) -> Guest:
        """A further machine of the run with the run's image and keys, booted once and
        powered off with the run: `make_machine(name, kernel, initrd, workdir, logdir)`
        gives the Machine (a feature's own QEMU command line, e.g. an SEV-ES guest)."""
        if name not in self._extra:
            initrd = self._prepare_image()
            machine = make_machine(name, self.kernel, initrd, self.workdir, self.options.output)
            self._extra[name] = Guest.boot(machine, self._keys, self.payload_errors, self.options.boot_timeout)
        return self._extra[name]

    def close_guest(self) -> str | None:
        """Power the guest off (a later guest() boots a new one)."""
        how = self._guest.poweroff() if self._guest else None
        self._guest = None
        return how

    def close(self, kill: bool = False) -> None:
        """End the run's machines (or undo what the run did on the live host and record
        the check in run.json's target.cleanup) and remove the run's own folder.
        `kill`: the run was interrupted, so the machines are killed, not powered off."""
        machines = [g.machine for g in (self._guest, *self._extra.values()) if g is not None]
        try:
            if self.live is not None:
                self.record.data["target"]["cleanup"] = self.live.close()
                self.record.write()
            elif kill:
                for machine in machines:
                    machine.kill()
            else:
                self.close_guest()
        finally:
            for extra in self._extra.values():
                with contextlib.suppress(HarnessError):
                    extra.poweroff()
            self._extra.clear()
            self._guest = None
            for machine in machines:     # whatever a failed poweroff left running
                machine.kill()
            shutil.rmtree(self.workdir, ignore_errors=True)
