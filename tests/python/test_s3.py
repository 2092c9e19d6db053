"""Segments and the catalog in an S3-compatible bucket (moto's S3 server, a
real HTTP S3 API on loopback): Lumen uploads them, keeps only its WAL on
local disk, and after a restart answers from the bucket alone."""

import io
import json
import os
import socket
import time
import urllib.request

import boto3
import pyarrow.parquet as pq
import lumen_server
from moto.server import ThreadedMotoServer

CREDS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def post(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_segments_live_in_the_bucket_and_survive_a_restart(tmp_path):
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                          aws_secret_access_key="test", region_name="us-east-1")
        s3.create_bucket(Bucket="lumen-test")
        args = ["--object-store", "s3://lumen-test/prod", "--s3-endpoint", endpoint, "--s3-allow-http", "true"]
        data = str(tmp_path)
        proc, addrs = lumen_server.start(data, args, CREDS)
        now = time.time_ns()
        records = [{"timeUnixNano": str(now - i), "severityNumber": 9,
                    "body": {"stringValue": f"order {i} shipped to warehouse {i % 5}"}} for i in range(300)]
        post(f"http://{addrs['otlp_http']}/v1/logs", {"resourceLogs": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "s3-check"}}]},
            "scopeLogs": [{"logRecords": records}]}]})
        proc.terminate()  # a clean shutdown writes the buffer out as a segment
        assert proc.wait(timeout=60) == 0

        keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="lumen-test").get("Contents", []))
        assert "prod/catalog.json" in keys, keys
        parquet = [k for k in keys if k.startswith("prod/segments/logs/") and k.endswith(".parquet")]
        assert len(parquet) == 1, keys
        # Only the WAL is local.
        assert not os.path.exists(os.path.join(data, "segments"))
        assert not os.path.exists(os.path.join(data, "catalog.json"))
        # The object is plain Parquet.
        body = s3.get_object(Bucket="lumen-test", Key=parquet[0])["Body"].read()
        assert pq.read_table(io.BytesIO(body)).num_rows == 300

        proc, addrs = lumen_server.start(data, args, CREDS)
        try:
            sql = f"http://{addrs['http']}/api/v1/sql"
            n = post(sql, {"query": "SELECT count(*) AS n FROM logs"})["rows"][0]["n"]
            assert n == 300
            rows = post(sql, {"query": "SELECT body FROM logs WHERE body LIKE 'order 7 %'"})["rows"]
            assert rows == [{"body": "order 7 shipped to warehouse 2"}]
        finally:
            proc.terminate()
            assert proc.wait(timeout=60) == 0
    finally:
        server.stop()
