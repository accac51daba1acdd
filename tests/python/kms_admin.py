"""Keys in the tests' KMS (scripts/kms.sh: AWS KMS's API), through boto3.

    kms_admin.py ENDPOINT create ALIAS    makes a symmetric key named alias/ALIAS; prints its id
    kms_admin.py ENDPOINT forget ALIAS    deletes the alias (the key stays, unnamed)

(moto's server does not enforce a key's state: a disabled key still encrypts and decrypts
there, so tests take a key away by its name instead.)
"""
import sys

import boto3


def main():
    endpoint, command, alias = sys.argv[1:4]
    kms = boto3.client("kms", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="weir-test", aws_secret_access_key="weir-test-secret")
    if command == "create":
        key = kms.create_key(Description=f"weir test key {alias}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/{alias}", TargetKeyId=key)
        print(key)
    elif command == "forget":
        kms.delete_alias(AliasName=f"alias/{alias}")
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
