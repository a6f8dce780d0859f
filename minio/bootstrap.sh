#!/bin/sh
# Prepares a running MinIO for Strata's cold tier, idempotently:
#   - bucket $STRATA_BUCKET (default `strata`);
#   - policy `strata-cold-tier`: read, write, delete and multipart uploads in
#     that bucket, nothing else;
#   - user $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY with that policy
#     (the credentials Strata is started with; see strata.env).
# Running it again changes nothing except resetting the user's secret to the
# given one.
#
# Needs MinIO's client `mc` on PATH. Settings (environment):
#   MINIO_ENDPOINT       default http://127.0.0.1:9000
#   MINIO_ROOT_USER      default minioadmin
#   MINIO_ROOT_PASSWORD  default minioadmin
#   STRATA_BUCKET        default strata
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY   Strata's key; defaults as in strata.env
# Typical use against a MinIO started some other way:
#   set -a; . minio/strata.env; set +a; minio/bootstrap.sh
set -eu

endpoint=${MINIO_ENDPOINT:-http://127.0.0.1:9000}
root_user=${MINIO_ROOT_USER:-minioadmin}
root_password=${MINIO_ROOT_PASSWORD:-minioadmin}
bucket=${STRATA_BUCKET:-strata}
access_key=${AWS_ACCESS_KEY_ID:-strata}
secret_key=${AWS_SECRET_ACCESS_KEY:-strata-cold-tier-secret}
policy=strata-cold-tier

command -v mc >/dev/null 2>&1 || {
    echo "bootstrap.sh: MinIO's client \`mc\` is not on PATH" >&2
    exit 1
}

# A private mc configuration, so that the user's own aliases are untouched.
config_dir=$(mktemp -d)
trap 'rm -rf "$config_dir"' EXIT
mcx() { mc --config-dir "$config_dir" "$@"; }

mcx alias set strata "$endpoint" "$root_user" "$root_password" >/dev/null

tries=0
until mcx ready strata >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "bootstrap.sh: MinIO at $endpoint is not ready after 60 s" >&2
        exit 1
    fi
    sleep 1
done

mcx mb --ignore-existing "strata/$bucket"

cat >"$config_dir/policy.json" <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$bucket"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$bucket/*"]
    }
  ]
}
POLICY
# `policy create` replaces a policy of the same name.
mcx admin policy create strata "$policy" "$config_dir/policy.json" >/dev/null
# `user add` on an existing user sets its secret.
mcx admin user add strata "$access_key" "$secret_key" >/dev/null
# Attaching a policy the user already has is refused; that is fine here.
if ! out=$(mcx admin policy attach strata "$policy" --user "$access_key" 2>&1); then
    case "$out" in
        *"already"*) ;;
        *)
            echo "$out" >&2
            exit 1
            ;;
    esac
fi

echo "MinIO at $endpoint: bucket '$bucket' and user '$access_key' (policy $policy) are ready"
