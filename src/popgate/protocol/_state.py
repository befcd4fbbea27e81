"""The POP3 session state machine: one ``State`` enum and the tables that drive it.

Everything that affects transitions lives in this module (as in h11's ``_state.py``), and it
does not know which role it serves. ``ServerConnection`` asks two questions of it:

* ``ACCEPTED[(state, type(command))]``: may this command be executed now, and which state
  holds while its reply is pending? A missing pair means "not valid in this state".
* ``after_reply(state, command, reply)``: the state once the reply has been sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum, auto
from types import MappingProxyType
from typing import Final

from ._events import (
    Auth,
    BadCommand,
    Capa,
    Challenge,
    Command,
    Dele,
    Err,
    List,
    MessageBody,
    MultiLine,
    Noop,
    Ok,
    Pass,
    Quit,
    Reply,
    Retr,
    Rset,
    SaslCancel,
    SaslResponse,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
    Xclient,
)

__all__ = ["ACCEPTED", "REPLY_TRANSITIONS", "State", "after_reply", "allowed_replies"]


class State(Enum):
    """Where a POP3 session is (RFC 1939 section 3, plus the in-between states of STLS/SASL)."""

    #: Before login (RFC 1939 section 4).
    AUTHORIZATION = auto()
    #: USER was accepted; PASS may follow (RFC 1939 section 7).
    AWAITING_PASS = auto()
    #: An AUTH exchange is running: every line is a SASL response (RFC 5034 section 4).
    SASL = auto()
    #: STLS was accepted; the driver is running the TLS handshake (RFC 2595 section 4).
    TLS_PENDING = auto()
    #: Logged in (RFC 1939 section 5).
    TRANSACTION = auto()
    #: QUIT was received in TRANSACTION; the driver is applying deletions (RFC 1939 section 6).
    UPDATE = auto()
    #: The session ended normally.
    CLOSED = auto()
    #: The peer broke the protocol; only an ``Err`` may still be sent.
    ERROR = auto()


_A = State.AUTHORIZATION
_P = State.AWAITING_PASS
_S = State.SASL
_T = State.TRANSACTION

#: (state, command type) -> state while the reply is pending. Missing pairs are wrong-state
#: errors (RFC 1939: "-ERR" for a command in the wrong state, and no state change).
ACCEPTED: Final[Mapping[tuple[State, type[Command]], State]] = MappingProxyType(
    {
        (_A, User): _A,
        (_A, Auth): _A,
        (_A, Capa): _A,
        (_A, Stls): _A,
        (_A, Quit): _A,
        (_A, Utf8): _A,
        (_A, Xclient): _A,
        # RFC 1939 section 7: PASS only right after USER; a new USER restarts the pair.
        (_P, Pass): _P,
        (_P, User): _P,
        (_P, Capa): _P,
        (_P, Quit): _P,
        # RFC 2595 section 4: STLS is an AUTHORIZATION command, and USER-then-STLS must
        # work so that the pending USER can be forgotten (checklist G53).
        (_P, Stls): _P,
        (_S, SaslResponse): _S,
        (_S, SaslCancel): _S,
        (_T, Stat): _T,
        (_T, List): _T,
        (_T, Retr): _T,
        (_T, Top): _T,
        (_T, Dele): _T,
        (_T, Noop): _T,
        (_T, Rset): _T,
        (_T, Uidl): _T,
        (_T, Capa): _T,
        # RFC 1939 section 6: QUIT in TRANSACTION enters UPDATE.
        (_T, Quit): State.UPDATE,
    }
)

_ANY_REPLY = (Ok, Err)
_SASL_REPLIES = (Challenge, Ok, Err)

#: (state while pending, command type, reply type) -> state after the reply. Pairs that are
#: not listed leave the state unchanged.
REPLY_TRANSITIONS: Final[Mapping[tuple[State, type[Command | BadCommand], type[Reply]], State]] = (
    MappingProxyType(
        {
            (_A, User, Ok): _P,
            (_P, User, Ok): _P,
            (_P, User, Err): _A,
            (_P, Pass, Ok): _T,
            (_P, Pass, Err): _A,
            (_A, Auth, Challenge): _S,
            (_A, Auth, Ok): _T,
            (_A, Auth, Err): _A,
            (_S, SaslResponse, Challenge): _S,
            (_S, SaslResponse, Ok): _T,
            (_S, SaslResponse, Err): _A,
            (_S, SaslCancel, Err): _A,
            # RFC 5034 section 4: an undecodable response fails the exchange.
            (_S, BadCommand, Err): _A,
            (_A, Stls, Ok): State.TLS_PENDING,
            (_P, Stls, Ok): State.TLS_PENDING,
            (_A, Quit, Ok): State.CLOSED,
            (_A, Quit, Err): State.CLOSED,
            (_P, Quit, Ok): State.CLOSED,
            (_P, Quit, Err): State.CLOSED,
            # RFC 1939 section 6: "+OK" or "-ERR" after UPDATE, and the session ends either way.
            (State.UPDATE, Quit, Ok): State.CLOSED,
            (State.UPDATE, Quit, Err): State.CLOSED,
        }
    )
)


def allowed_replies(pending: Command | BadCommand) -> tuple[type[Reply], ...]:
    """The reply types that may answer ``pending``."""
    match pending:
        case BadCommand() | SaslCancel():
            return (Err,)
        case Auth() | SaslResponse():
            return _SASL_REPLIES
        case Capa() | List(msg=None) | Uidl(msg=None):
            return (MultiLine, Err)
        case Retr() | Top():
            return (MessageBody, Err)
        case _:
            return _ANY_REPLY


def after_reply(state: State, pending: Command | BadCommand, reply: Reply) -> State:
    """The state once ``reply`` to ``pending`` has been sent in ``state``."""
    return REPLY_TRANSITIONS.get((state, type(pending), type(reply)), state)
