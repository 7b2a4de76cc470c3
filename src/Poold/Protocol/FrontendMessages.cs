namespace Poold.Protocol;

/// <summary>Writers for the client-side messages Poold sends to backends.</summary>
internal static class FrontendMessages
{
    /// <summary>StartupMessage: protocol 3.0, then name/value C-string pairs, then a zero byte.</summary>
    public static MessageBuffer Startup(this MessageBuffer b, IEnumerable<KeyValuePair<string, string>> parameters)
    {
        b.BeginUntyped().WriteInt32(StartupCode.Protocol30);
        foreach (var (name, value) in parameters)
        {
            b.WriteCString(name).WriteCString(value);
        }

        return b.WriteByte(0).End();
    }

    public static MessageBuffer SslRequest(this MessageBuffer b) => b.BeginUntyped().WriteInt32(StartupCode.SslRequest).End();

    public static MessageBuffer CancelRequest(this MessageBuffer b, int processId, int secretKey) =>
        b.BeginUntyped().WriteInt32(StartupCode.CancelRequest).WriteInt32(processId).WriteInt32(secretKey).End();

    public static MessageBuffer Password(this MessageBuffer b, string password) =>
        b.Begin((byte)FrontendCode.Password).WriteCString(password).End();

    /// <summary>SASLInitialResponse: mechanism, then the length of the data and the data.</summary>
    public static MessageBuffer SaslInitialResponse(this MessageBuffer b, string mechanism, ReadOnlySpan<byte> data) =>
        b.Begin((byte)FrontendCode.Password).WriteCString(mechanism).WriteInt32(data.Length).WriteBytes(data).End();

    public static MessageBuffer SaslResponse(this MessageBuffer b, ReadOnlySpan<byte> data) =>
        b.Begin((byte)FrontendCode.Password).WriteBytes(data).End();

    public static MessageBuffer Query(this MessageBuffer b, string sql) => b.Begin((byte)FrontendCode.Query).WriteCString(sql).End();

    public static MessageBuffer Terminate(this MessageBuffer b) => b.Begin((byte)FrontendCode.Terminate).End();
}
