using System.Text;
using Poold.Protocol;

namespace Poold.Pooling;

internal sealed partial class BackendConnection
{
    /// <summary>
    /// Runs the named prepared statement <paramref name="statement"/> with one text parameter over the extended protocol
    /// (never a query built from strings), on an idle connection before or outside the relay. With
    /// <paramref name="prepareSql"/>, the statement is (re)prepared first: Close, then Parse. Returns the rows as text; an
    /// ErrorResponse becomes <see cref="BackendRejectedException"/> once the server is ready again.
    /// </summary>
    public async Task<List<string?[]>> QueryPreparedAsync(string statement, string? prepareSql, string parameter, CancellationToken cancellationToken)
    {
        if (prepareSql is not null)
        {
            // Close: 'S' for a statement, then its name. Closing one that does not exist is not an error.
            _out.Begin((byte)FrontendCode.Close).WriteByte((byte)'S').WriteCString(statement).End();
            // Parse: name, query, one parameter whose type the server infers (0).
            _out.Begin((byte)FrontendCode.Parse).WriteCString(statement).WriteCString(prepareSql).WriteInt16(1).WriteInt32(0).End();
        }

        var value = Encoding.UTF8.GetBytes(parameter);
        // Bind: unnamed portal, the statement, no parameter format codes (all text), one value, no result format codes (all text).
        _out.Begin((byte)FrontendCode.Bind).WriteCString("").WriteCString(statement).WriteInt16(0)
            .WriteInt16(1).WriteInt32(value.Length).WriteBytes(value).WriteInt16(0).End();
        // Execute the unnamed portal, all rows; then Sync.
        _out.Begin((byte)FrontendCode.Execute).WriteCString("").WriteInt32(0).End();
        _out.Begin((byte)FrontendCode.Sync).End();
        await SendAsync(cancellationToken);

        var rows = new List<string?[]>();
        BackendRejectedException? error = null;
        while (true)
        {
            var (code, body) = await ReadFrameAsync(cancellationToken);
            switch ((BackendCode)code)
            {
                case BackendCode.DataRow:
                    rows.Add(ParseDataRow(body));
                    break;
                case BackendCode.ErrorResponse:
                    error ??= new BackendRejectedException(NodeId, ErrorFields.Parse(new(body)), ErrorFrame(body));
                    break;
                case BackendCode.ParameterStatus:
                    var (name, setting) = ParseParameterStatus(new(body));
                    UpdateParameter(name, setting);
                    break;
                case BackendCode.ReadyForQuery when body.Length == 1:
                    TransactionStatus = (TransactionStatus)body[0];
                    return error is null ? rows : throw error;
            }
        }
    }
}
