"""The stand-in JMeter image of the agent's Docker tests: a static busybox from Debian whose
``/usr/bin/jmeter`` is a shell script printing JMeter's lines and writing a JTL."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

FAKE_IMAGE = "octotui-test-busybox:local"
#: A plan the stand-in accepts (it only checks that the file exists).
PLAN = "<?xml version='1.0'?><jmeterTestPlan version='1.2'><hashTree/></jmeterTestPlan>"

FAKE_JMETER = r"""#!/bin/busybox sh
# Stands in for jmeter in tests: JMeter's output lines, a CSV JTL, a jmeter.log; no UDP listener.
B=/bin/busybox
plan=""; jtl=/dev/null; log=/dev/null; port=4445; duration=600; code=0; total=0; i=0
while [ $# -gt 0 ]; do
  case "$1" in
    -t) plan="$2"; shift ;;
    -l) jtl="$2"; shift ;;
    -j) log="$2"; shift ;;
    -Jjmeterengine.nongui.port=*) port="${1#*=}" ;;
    -Jfake.duration=*) duration="${1#*=}" ;;
    -Jfake.exit=*) code="${1#*=}" ;;
  esac
  shift
done
trap 'echo "summary = $total in 00:00:01 = 5.0/s Avg: 10 Min: 10 Max: 10 Err: 0 (0.00%)"; exit 143' TERM
if [ ! -f "$plan" ]; then echo "An error occurred: cannot read $plan"; exit 1; fi
echo "Creating summariser <summary>"
echo "Created the tree successfully using $plan"
echo "Waiting for possible shutdown message on port $port"
echo "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,bytes,Latency" > "$jtl"
echo "2024/01/01 00:00:00 INFO  - jmeter.JMeter: fake JMeter started" > "$log"
while [ "$i" -lt "$duration" ]; do
  $B sleep 1
  i=$((i + 1))
  now=$(($($B date +%s) * 1000))
  for n in 1 2 3 4 5; do echo "$now,$((n * 10)),fake,200,OK,users 1-1,text,true,100,5" >> "$jtl"; done
  total=$((total + 5))
  echo "summary +      5 in 00:00:01 =    5.0/s Avg:    30 Min:    10 Max:    50 Err:     0 (0.00%) Active: 1 Started: 1 Finished: 0"
  echo "summary = $total in 00:00:0$i =    5.0/s Avg:    30 Min:    10 Max:    50 Err:     0 (0.00%)"
done
if [ "$code" != "0" ]; then
  echo "2024/01/01 00:00:01 ERROR - jmeter.JMeter: fake failure with code $code" >> "$log"
  echo "Error in NonGUIDriver: fake failure"
fi
echo "... end of run"
exit "$code"
"""  # noqa: E501


@pytest.fixture(scope="session")
def fake_jmeter_image(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``octotui-test-busybox:local``: made once from Debian's busybox-static when absent."""
    import docker.errors

    try:
        docker_client.images.get(FAKE_IMAGE)
        return FAKE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    work = tmp_path_factory.mktemp("busybox")
    busybox = shutil.which("busybox")
    if busybox is None or "statically" not in subprocess.run(["file", "-L", busybox], capture_output=True,
                                                              text=True, check=False).stdout:  # fmt: skip
        fetched = subprocess.run(["apt-get", "download", "busybox-static"], cwd=work, capture_output=True,
                                 text=True, timeout=180, check=False)  # fmt: skip
        debs = list(work.glob("busybox-static_*.deb"))
        if fetched.returncode != 0 or not debs:
            pytest.fail(f"cannot fetch busybox-static to build {FAKE_IMAGE}: {fetched.stderr[-500:]}")
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(work / "deb")], check=True, timeout=60)
        busybox = str(work / "deb" / "bin" / "busybox")
    import_fake_jmeter(docker_client, FAKE_IMAGE, busybox, work)
    docker_client.images.get(FAKE_IMAGE)
    return FAKE_IMAGE


def import_fake_jmeter(docker_client: Any, tag: str, busybox: str | Path, work: Path, **extra: Path) -> None:
    """Import as ``tag`` a root filesystem of a static ``busybox`` and the stand-in ``jmeter``
    script (its entrypoint), plus ``extra`` files at the top level by name; ``work`` holds the parts."""
    script = work / "jmeter"
    script.write_text(FAKE_JMETER)
    script.chmod(0o755)
    tarball = work / "image.tar"
    with tarfile.open(tarball, "w") as tar:
        for directory in ("bin", "usr", "usr/bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        tar.add(script, arcname="usr/bin/jmeter")
        for name, path in extra.items():
            tar.add(path, arcname=name)
    repository, version = tag.rsplit(":", 1)
    docker_client.api.import_image(
        src=str(tarball), repository=repository, tag=version, changes=['ENTRYPOINT ["/usr/bin/jmeter"]']
    )
