"""Build the boto3 session and clients the tool uses: the public face of ``recycler.aws.session``
(the session and region as the environment sets them, through ``recycler.hosts.environment``).

Base credentials come from a named profile, from static keys, or from the default chain (in Lambda: the
execution role); ``role_arn`` assumes a role on top of that. Nothing there logs a key, a secret or a token.
"""

from recycler.aws.session import (
    CLIENT_CONFIG,
    NO_REGION,
    QUICK_CLIENT_CONFIG,
    create_client,
    create_quick_client,
    role_session_name,
)
from recycler.hosts.environment import get_aws_session, resolve_region

__all__ = [
    "CLIENT_CONFIG",
    "NO_REGION",
    "QUICK_CLIENT_CONFIG",
    "create_client",
    "create_quick_client",
    "get_aws_session",
    "resolve_region",
    "role_session_name",
]
