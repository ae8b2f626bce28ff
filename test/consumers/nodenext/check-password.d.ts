// The README's getting started calls the app's own password check; this is its shape.
declare function checkPassword (body: unknown): Promise<{ id: string, username: string }>
