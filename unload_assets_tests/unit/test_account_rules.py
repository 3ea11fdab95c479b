"""The account's rules without a server: the KMS key in the catalogue, the statement and a HeadObject
answer; the expected bucket owner as an attribute; the refusal line naming action and resource."""

from __future__ import annotations

from pathlib import Path

import pytest

from unload_assets.assembly import build_resources
from unload_assets.catalogue import CatalogueError
from unload_assets.catalogue.load import catalogue_from_mapping
from unload_assets.component import UnloadTargets
from unload_assets.encryption import Encryption, same_key
from unload_assets.resources.s3 import IAM_ACTIONS, resource_arn
from unload_assets.statement.auth import UnloadAuth
from unload_assets.statement.build import build_unload
from unload_assets_tests.support.this_project import NAMES, configuration

KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER = "arn:aws:kms:us-east-1:123456789012:key/0000abcd-12ab-34cd-56ef-1234567890ab"
TARGET = {"name": "t", "description": "d", "sql": "select 1", "key_template": "x/t.csv"}


def _catalogue(defaults: dict, **fields: object):
    return catalogue_from_mapping({"defaults": defaults, "targets": [{**TARGET, **fields}]}, "c.yaml")


def test_the_key_is_inherited_from_defaults_and_reaches_the_statement():
    [target] = _catalogue({"kms_key_id": KEY}).targets
    sql = build_unload(target, partition_date=None, location="s3://b/p/", auth=UnloadAuth("default")).sql
    assert f"ENCRYPTED KMS_KEY_ID '{KEY}'" in sql and sql.index("ENCRYPTED") < sql.index("MANIFEST")
    assert target.encryption.write_args() == {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY}


def test_a_target_key_and_bucket_key_win_over_defaults():
    [target] = _catalogue({"kms_key_id": KEY}, kms_key_id=OTHER, bucket_key=True).targets
    assert target.encryption.write_args() == {
        "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": OTHER, "BucketKeyEnabled": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kms_key_id": "alias/exports"}, "not an alias"),
        ({"kms_key_id": "secret'key"}, "is not a KMS key id or key ARN"),
        ({"bucket_key": True}, "field 'bucket_key': an S3 bucket key is for SSE-KMS"),
    ],
)
def test_bad_encryption_fields_are_named(fields, message):
    with pytest.raises(CatalogueError, match=message):
        _catalogue({}, **fields)


def test_expected_bucket_owner_is_a_catalogue_default():
    assert _catalogue({"expected_bucket_owner": "123456789012"}).expected_bucket_owner == "123456789012"
    with pytest.raises(CatalogueError, match="not a 12-digit AWS account id"):
        _catalogue({"expected_bucket_owner": "12345"})


def test_a_head_object_answer_is_judged_by_its_key():
    encryption = Encryption(KEY)
    assert encryption.problem({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": KEY}) is None
    assert encryption.problem({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": OTHER}) == (
        f"encrypted with KMS key {OTHER}, not {KEY}"
    )
    assert (
        encryption.problem({"ServerSideEncryption": "AES256"})
        == f"encrypted with AES256, not aws:kms with {KEY}"
    )
    assert Encryption().problem({}) is None  # no key asked for: the bucket's default is fine
    assert same_key("1234abcd-12ab-34cd-56ef-1234567890ab", KEY) and not same_key(KEY, OTHER)


def test_the_component_attributes_feed_the_targets_and_the_client(tmp_path: Path):
    (tmp_path / "defs.yaml").write_text("")
    component = UnloadTargets.from_attributes_dict(
        attributes={
            "name": "exports",
            "targets": [TARGET],
            "redshift": {"host": "h", "database": "d", "user": "u"},
            "s3": {
                "bucket": "b",
                "iam_role": "default",
                "kms_key_id": KEY,
                "bucket_key": "true",
                "expected_bucket_owner": "123456789012",
            },
        }  # fmt: skip
    )
    config = component.configuration(tmp_path)
    assert config.target_defaults == {"kms_key_id": KEY, "bucket_key": True}
    assert config.s3.expected_bucket_owner == config.storage.expected_bucket_owner == "123456789012"


def test_every_operation_maps_to_the_action_and_resource_it_needs():
    assert IAM_ACTIONS["UploadPartCopy"] == "s3:PutObject"
    assert IAM_ACTIONS["ListMultipartUploads"] == "s3:ListBucketMultipartUploads"
    assert resource_arn("ListObjectsV2", "b", None) == "arn:aws:s3:::b"
    assert resource_arn("PutObject", "b", "k/x.csv") == "arn:aws:s3:::b/k/x.csv"


def test_the_catalogues_bucket_role_and_owner_win_over_the_instances():
    catalogue = _catalogue(
        {
            "bucket": "catalogue-bucket",
            "iam_role": "arn:aws:iam::123456789012:role/CatalogueUnload",
            "expected_bucket_owner": "123456789012",
        }
    )
    resources = build_resources(configuration(), catalogue)
    settings, s3 = resources[NAMES.settings], resources[NAMES.s3]
    assert (settings.bucket, settings.iam_role, settings.expected_bucket_owner) == (  # type: ignore[attr-defined]
        "catalogue-bucket",
        "arn:aws:iam::123456789012:role/CatalogueUnload",
        "123456789012",
    )
    assert s3.expected_bucket_owner == "123456789012"  # type: ignore[attr-defined]
    assert resources[NAMES.handoff].s3_bucket == "catalogue-bucket"  # type: ignore[attr-defined]
