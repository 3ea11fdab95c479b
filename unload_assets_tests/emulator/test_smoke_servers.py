import psycopg2


def test_postgres_cluster_accepts_password_login(pg_cluster):
    with psycopg2.connect(pg_cluster.dsn()) as conn, conn.cursor() as cur:
        cur.execute("select current_user")
        assert cur.fetchone() == (pg_cluster.user,)


def test_s3_server_has_bucket(s3_server):
    client = s3_server.client()
    client.put_object(Bucket=s3_server.bucket, Key="smoke/x", Body=b"hello")
    assert client.get_object(Bucket=s3_server.bucket, Key="smoke/x")["Body"].read() == b"hello"
