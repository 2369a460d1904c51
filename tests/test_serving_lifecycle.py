"""Versions coming and going under load, TLS, and shutdown: a hot swap
fails no request, a corrupt or incomplete version is never served, SIGTERM
drains in-flight requests, and gRPC over (mutual) TLS works with
certificates made here."""

from __future__ import annotations

import datetime
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from serving.client import ClientOptions, GrpcClient, ServingError
from serving.process import running_server
from tests.serving_fixtures import build_versions, requests_in_flight

POSITIVE = "A great film, I love it!"


def _wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_hot_swap_under_load_fails_no_request_and_skips_corrupt_versions(
        tmp_path: Path) -> None:
    """Under 4 concurrent clients: a corrupt v3 and a half-copied v4 are never
    served (v1 keeps serving, the reason is logged), a complete v2 is swapped
    in, then v4 completes and is swapped in, v1 is unloaded, and deleting an
    old version's directory changes nothing: 0 failed requests."""
    build_versions(tmp_path / "built", [1, 2, 4])
    base = tmp_path / "base"
    base.mkdir()
    shutil.copytree(tmp_path / "built" / "1", base / "1")
    with running_server([f"--model_base_path={base}", "--model_name=imdb",
                         "--file_system_poll_wait_seconds=0.3", "--enable_batching"],
                        tmp_path / "server.log", wait_for="imdb") as server:
        with requests_in_flight(server, "imdb", POSITIVE, clients=4, deadline_s=10,
                                max_requests=5000) as results:
            corrupt = base / "3"
            corrupt.mkdir()
            (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
            # An incomplete copy: the graph is there, the variables are not yet.
            partial = base / "4"
            partial.mkdir()
            shutil.copy(tmp_path / "built" / "4" / "saved_model.pb", partial / "saved_model.pb")
            assert _wait_for(lambda: "version 3" in server.log_text()
                             and "version 4" in server.log_text(), 30), server.log_text()
            status = {r["version"]: r for r in server.grpc("imdb").status()}
            assert status["3"]["state"] == "END" and status["3"]["status"]["error_code"] != "OK"
            assert status["1"]["state"] == "AVAILABLE"
            shutil.copytree(tmp_path / "built" / "2", base / "2")
            time.sleep(1.0)  # v2 is not the newest on disk: v4 and v3 are, and fail
            shutil.rmtree(partial)
            shutil.copytree(tmp_path / "built" / "4", tmp_path / "staging4")
            (tmp_path / "staging4").rename(partial)
            assert _wait_for(lambda: 4 in results[-20:], 60), server.log_text()
            shutil.rmtree(base / "1")
            time.sleep(1.0)
        errors = [r for r in results if isinstance(r, Exception)]
        assert errors == [] and len(results) > 50
        served = [r for r in results if isinstance(r, int)]
        assert 3 not in served and served[0] == 1 and served[-1] == 4
        assert "NOT loaded" in server.log_text()
        rows = {r["version"]: r["state"] for r in server.grpc("imdb").status()}
        assert rows["4"] == "AVAILABLE" and rows["1"] == "END"


def test_sigterm_drains_in_flight_requests_and_exits_cleanly(tmp_path: Path) -> None:
    """Requests already sent when SIGTERM arrives are answered; the process
    exits 0."""
    build_versions(tmp_path / "base", [1])
    with running_server([f"--model_base_path={tmp_path / 'base'}", "--model_name=imdb"],
                        tmp_path / "server.log", wait_for="imdb") as server:
        big = [POSITIVE * 20] * 2000  # a long request, in flight at SIGTERM
        answers: list[object] = []
        client = server.grpc("imdb", deadline_s=60, retries=0, batch_size=2000)

        def call() -> None:
            try:
                answers.append(client.predict(big))
            except ServingError as error:
                answers.append(error)
        thread = threading.Thread(target=call)
        thread.start()
        time.sleep(0.3)
        server.process.send_signal(signal.SIGTERM)
        thread.join(60)
        assert server.process.wait(60) == 0
        client.close()
    assert len(answers) == 1 and isinstance(answers[0], list) and len(answers[0]) == 2000
    assert "draining" in server.log_text()


def _certificate(name: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def test_grpc_over_mutual_tls_with_ssl_config_file(tmp_path: Path) -> None:
    """--ssl_config_file (server key/cert, client_verify): a client with the
    CA and a client certificate is served; one without a client certificate,
    or without TLS, is refused."""
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = _certificate("test-ca", ca_key, ca_name, ca_key, ca=True)
    server_cert = _certificate("localhost", server_key, ca_name, ca_key, ca=False)
    client_cert = _certificate("client", client_key, ca_name, ca_key, ca=False)
    config = tmp_path / "ssl.config"
    config.write_text(
        f"server_key: {_key_pem(server_key).decode()!r}\n"
        f"server_cert: {_pem(server_cert).decode()!r}\n"
        f"custom_ca: {_pem(ca).decode()!r}\nclient_verify: true\n".replace("'", '"'))
    build_versions(tmp_path / "base", [1])
    with running_server([f"--model_base_path={tmp_path / 'base'}", "--model_name=imdb",
                         f"--ssl_config_file={config}"],
                        tmp_path / "server.log", wait_for="imdb") as server:
        target = f"127.0.0.1:{server.grpc_port}"
        tls = {"root_certificates": _pem(ca), "server_name_override": "localhost",
               "deadline_s": 5, "retries": 0}
        with GrpcClient(ClientOptions(target, "imdb", private_key=_key_pem(client_key),
                                      certificate_chain=_pem(client_cert), **tls)) as client:
            assert client.predict([POSITIVE])[0] > 0.9
        for options in (ClientOptions(target, "imdb", **tls),
                        ClientOptions(target, "imdb", deadline_s=5, retries=0)):
            with GrpcClient(options) as refused, pytest.raises(ServingError) as caught:
                refused.predict([POSITIVE])
            assert caught.value.code == "UNAVAILABLE"


def test_a_request_whose_deadline_passes_is_counted_cancelled_and_the_server_goes_on(
        tmp_path: Path) -> None:
    """The client gives up on a request the server holds (a batch that waits
    5 s for company): it gets DEADLINE_EXCEEDED, the server counts the
    request as CANCELLED and answers the next one."""
    import requests

    build_versions(tmp_path / "base", [1])
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 5000000 }\n"
                        "num_batch_threads { value: 1 }\n")
    with running_server([f"--model_base_path={tmp_path / 'base'}", "--model_name=imdb",
                         "--enable_batching", f"--batching_parameters_file={batching}"],
                        tmp_path / "server.log", wait_for="imdb") as server:
        with server.grpc("imdb", deadline_s=1, retries=0) as impatient, \
                pytest.raises(ServingError) as raised:
            impatient.predict([POSITIVE])
        assert raised.value.code == "DEADLINE_EXCEEDED"
        with server.grpc("imdb", deadline_s=30, retries=0) as client:
            assert len(client.predict([POSITIVE])) == 1
        text = requests.get(f"{server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
        assert ':tensorflow:serving:request_count{model_name="imdb",status="CANCELLED"} 1' in text
