namespace Poold.Protocol;

/// <summary>A peer broke the protocol or asked for something Poold refuses; carries the SQLSTATE to report.</summary>
internal class PgProtocolException(string sqlState, string message) : Exception(message)
{
    public string SqlState { get; } = sqlState;
}

/// <summary>The client must be told this error (FATAL) and disconnected.</summary>
internal sealed class ClientFatalException(string sqlState, string message, string? detail = null) : PgProtocolException(sqlState, message)
{
    public string? Detail { get; } = detail;
}
