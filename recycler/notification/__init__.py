"""The SMTP email report of a recycle's outcome, one module per concern.

* ``settings``: the validated smtpCredentials and emailNotification sections.
* ``secrets``: reading the password (literal, Secrets Manager or SSM) and redacting it.
* ``content``: what the email says: the outcome, its sections, values in readable words.
* ``render``: the subject, headers and the text and HTML bodies.
* ``transport``: delivery over SMTP with TLS and one deadline.
* ``addresses``: the syntax of email addresses, host names and header values.
* ``errors``: the notifier's exceptions, shared by all of the above.

``Notification.notify`` ties them together. Nothing is re-exported here:
import each part from its own module.
"""
