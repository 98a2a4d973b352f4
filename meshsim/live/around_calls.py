"""Code around each call a grpc.aio server answers, for every call pattern: what server interceptors share.

A server interceptor that wants to see a call start and end (a metric, a span) must wrap
the method's handler, and each of the four patterns has its own handler shape; a
streaming one may yield its answers or write them with `context.write()`. `around`
does that once: `begin(context)` is called as a call starts, and what it returns is
called with the error the call ended with (None when it ended without one).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

# begin(context) -> end(error)
Begin = Callable[[grpc.aio.ServicerContext], Callable[[BaseException | None], None]]


def around(handler: grpc.RpcMethodHandler, begin: Begin) -> grpc.RpcMethodHandler:
    """`handler`, each of its calls between `begin` and the end `begin` returned."""
    if handler.unary_unary is not None:
        return handler._replace(unary_unary=_once(handler.unary_unary, begin))
    if handler.stream_unary is not None:
        return handler._replace(stream_unary=_once(handler.stream_unary, begin))
    if handler.unary_stream is not None:
        return handler._replace(unary_stream=_stream(handler.unary_stream, begin))
    return handler._replace(stream_stream=_stream(handler.stream_stream, begin))


def _once(behaviour: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    async def answer(request: Any, context: grpc.aio.ServicerContext) -> Any:
        end = begin(context)
        try:
            response = await behaviour(request, context)
        except BaseException as error:
            end(error)
            raise
        end(None)
        return response

    return answer


def _stream(behaviour: Callable[..., Any], begin: Begin) -> Callable[..., Any]:
    async def answers(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        end = begin(context)
        try:
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await result  # a servicer that writes with context.write()
        except BaseException as error:
            end(error)
            raise
        end(None)

    return answers
