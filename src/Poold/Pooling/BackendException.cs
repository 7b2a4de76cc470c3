using Poold.Protocol;

namespace Poold.Pooling;

/// <summary>A backend could not be reached or used; the client gets <see cref="SqlState"/> and the message.</summary>
internal class BackendException(int nodeId, string sqlState, string message, Exception? inner = null) : Exception(message, inner)
{
    public int NodeId { get; } = nodeId;

    public string SqlState { get; } = sqlState;
}

/// <summary>
/// The backend refused the login with an ErrorResponse (wrong password, no such database, too many connections):
/// its own frame is relayed to the client unchanged, so the client sees PostgreSQL's SQLSTATE and text.
/// </summary>
internal sealed class BackendRejectedException(int nodeId, ErrorFields error, byte[] frame)
    : BackendException(nodeId, error.SqlState, error.Message)
{
    public ErrorFields Error { get; } = error;

    /// <summary>The whole ErrorResponse frame as the backend sent it.</summary>
    public byte[] Frame { get; } = frame;
}
