namespace Poold.Protocol;

/// <summary>Writers for the server-side messages Poold sends to clients.</summary>
internal static class BackendMessages
{
    /// <summary>ErrorResponse / NoticeResponse: S, V (severity twice), C, M, optional D, then a zero byte.</summary>
    public static MessageBuffer Error(this MessageBuffer b, string severity, string sqlState, string message, string? detail = null,
        BackendCode code = BackendCode.ErrorResponse)
    {
        b.Begin((byte)code)
            .WriteByte((byte)'S').WriteCString(severity)
            .WriteByte((byte)'V').WriteCString(severity)
            .WriteByte((byte)'C').WriteCString(sqlState)
            .WriteByte((byte)'M').WriteCString(message);
        if (detail is not null)
        {
            b.WriteByte((byte)'D').WriteCString(detail);
        }

        return b.WriteByte(0).End();
    }

    public static MessageBuffer Authentication(this MessageBuffer b, AuthRequest request) =>
        b.Begin((byte)BackendCode.Authentication).WriteInt32((int)request).End();

    /// <summary>AuthenticationMD5Password: code 5 and a 4-byte salt.</summary>
    public static MessageBuffer AuthenticationMd5(this MessageBuffer b, ReadOnlySpan<byte> salt) =>
        b.Begin((byte)BackendCode.Authentication).WriteInt32((int)AuthRequest.Md5Password).WriteBytes(salt).End();

    /// <summary>AuthenticationSASL: code 10, mechanism names as C strings, then an empty string.</summary>
    public static MessageBuffer AuthenticationSasl(this MessageBuffer b, IEnumerable<string> mechanisms)
    {
        b.Begin((byte)BackendCode.Authentication).WriteInt32((int)AuthRequest.Sasl);
        foreach (var mechanism in mechanisms)
        {
            b.WriteCString(mechanism);
        }

        return b.WriteByte(0).End();
    }

    /// <summary>AuthenticationSASLContinue (11) or AuthenticationSASLFinal (12) with the mechanism's data.</summary>
    public static MessageBuffer AuthenticationSaslData(this MessageBuffer b, AuthRequest request, ReadOnlySpan<byte> data) =>
        b.Begin((byte)BackendCode.Authentication).WriteInt32((int)request).WriteBytes(data).End();

    public static MessageBuffer ParameterStatus(this MessageBuffer b, string name, string value) =>
        b.Begin((byte)BackendCode.ParameterStatus).WriteCString(name).WriteCString(value).End();

    public static MessageBuffer BackendKeyData(this MessageBuffer b, int processId, int secretKey) =>
        b.Begin((byte)BackendCode.BackendKeyData).WriteInt32(processId).WriteInt32(secretKey).End();

    /// <summary>RowDescription of text columns (type oid 25), as Poold's own results use.</summary>
    public static MessageBuffer TextRowDescription(this MessageBuffer b, IReadOnlyList<string> columns)
    {
        b.Begin((byte)BackendCode.RowDescription).WriteInt16((short)columns.Count);
        for (var i = 0; i < columns.Count; i++)
        {
            b.WriteCString(columns[i]).WriteInt32(0).WriteInt16((short)(i + 1)).WriteInt32(25).WriteInt16(-1).WriteInt32(-1).WriteInt16(0);
        }

        return b.End();
    }

    public static MessageBuffer TextDataRow(this MessageBuffer b, IReadOnlyList<string> values)
    {
        b.Begin((byte)BackendCode.DataRow).WriteInt16((short)values.Count);
        foreach (var value in values)
        {
            var bytes = System.Text.Encoding.UTF8.GetBytes(value);
            b.WriteInt32(bytes.Length).WriteBytes(bytes);
        }

        return b.End();
    }

    public static MessageBuffer CommandComplete(this MessageBuffer b, string tag) => b.Begin((byte)BackendCode.CommandComplete).WriteCString(tag).End();

    /// <summary>A message with no body (ParseComplete, BindComplete, CloseComplete, NoData, EmptyQueryResponse).</summary>
    public static MessageBuffer Empty(this MessageBuffer b, BackendCode code) => b.Begin((byte)code).End();

    public static MessageBuffer NoParameters(this MessageBuffer b) => b.Begin((byte)BackendCode.ParameterDescription).WriteInt16(0).End();

    public static MessageBuffer ReadyForQuery(this MessageBuffer b, TransactionStatus status) =>
        b.Begin((byte)BackendCode.ReadyForQuery).WriteByte((byte)status).End();

    /// <summary>NegotiateProtocolVersion: the newest minor version supported, then the options not recognised.</summary>
    public static MessageBuffer NegotiateProtocolVersion(this MessageBuffer b, int newestMinor, IReadOnlyList<string> unsupportedOptions)
    {
        b.Begin((byte)BackendCode.NegotiateProtocolVersion).WriteInt32(newestMinor).WriteInt32(unsupportedOptions.Count);
        foreach (var option in unsupportedOptions)
        {
            b.WriteCString(option);
        }

        return b.End();
    }
}
