"""The AWS services the functions call, by botocore's name: one place for the fact.

The functions' AwsSdkLayer ships their own boto3 and botocore with the models of these services only
(layers/qbo_connect/trim_sdk_data.py): botocore lists every service it has a model for and reads its
endpoints of every service the first time a client is made, tens of milliseconds of each cold start
for 400 services nobody calls (docs/performance.md, "Cold start"). A client of a service not named
here fails on that layer, so the runtime refuses it everywhere (runtime.Services).
"""

AWS_SERVICES = frozenset({"cognito-idp", "dynamodb", "events", "kms", "lambda", "secretsmanager", "sqs"})
# Kept beside them for botocore's credential providers (an assumed role, IAM Identity Center), which a
# function's own credentials never need in Lambda but a profile on a workstation might.
CREDENTIAL_SERVICES = frozenset({"sts", "sso", "sso-oidc"})
